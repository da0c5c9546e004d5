//! The prompts of the feedback turns, one function per injection format, shared by the
//! strategies and by anything that builds the same contexts outside a rollout (the trainer's
//! feedback-conditioned SFT examples).

use redraft_feedback_protocol::Templates;
use redraft_feedback_protocol::types::question_of;
use redraft_tokenizer::Message;
use redraft_verifier::Problem;

use crate::error::Result;

/// The chat messages of a problem (its first-turn prompt).
pub fn problem_messages(problem: &Problem) -> Vec<Message> {
    problem
        .chat()
        .into_iter()
        .map(|m| Message::new(m.role, m.content))
        .collect()
}

/// RLTF's revision turn: one fresh user message with the question, the previous `response`
/// and the `critique` (the `rltf_revision` template; math problems keep the template's
/// `\boxed{}` instruction, the generated families their own answer format).
pub fn revision_message(
    templates: &Templates,
    problem: &Problem,
    response: &str,
    critique: &str,
) -> Result<Message> {
    let question = question_of(problem);
    let text = match problem {
        Problem::Math(_) => templates.rltf_revision(&question, response, critique)?,
        _ => templates.rltf_revision_with(&question, response, critique, "")?,
    };
    Ok(Message::user(text))
}

/// RLTF-FM's feedback-modelling prompt for a previous `response`: one user message (the
/// `rltf_critique` template) after which the policy writes a critique.
pub fn critique_message(
    templates: &Templates,
    problem: &Problem,
    response: &str,
) -> Result<Message> {
    Ok(Message::user(
        templates.rltf_critique(&question_of(problem), response)?,
    ))
}

/// MulFeRL's regeneration: the `mulferl_regen` user message and, when `forced_prefix`, the
/// response prefix `<thinking><feedback>…</feedback>` the engine forces (else empty).
pub fn regeneration_prompt(
    templates: &Templates,
    problem: &Problem,
    feedback: &str,
    forced_prefix: bool,
) -> Result<(Message, String)> {
    let prompt = templates.mulferl_regen(&question_of(problem), feedback)?;
    let prefix = if forced_prefix {
        templates.forced_prefix(feedback)?
    } else {
        String::new()
    };
    Ok((Message::user(prompt), prefix))
}

/// R^3L's guidance system message for a retry after `feedback` (the `r3l_guidance_system`
/// template).
pub fn guidance_system(templates: &Templates, feedback: &str) -> Result<String> {
    Ok(templates.r3l_guidance_system("", feedback)?)
}

/// R^3L's guided retry from the first attempt: the rendered `guidance` as a system message,
/// then the problem's messages.
pub fn guided_messages(guidance: &str, problem: &Problem) -> Vec<Message> {
    let mut out = vec![Message::system(guidance.to_owned())];
    out.extend(problem_messages(problem));
    out
}
