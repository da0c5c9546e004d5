//! Supervised warm-start examples: reference solutions, and feedback-conditioned revisions.
//!
//! A plain example is the problem's chat prompt followed by its reference solution. A revision
//! example teaches the policy to use feedback in the format each feedback method injects it:
//! the reference solution is corrupted (one digit changed, until the verifier rejects it), the
//! verifier's critic writes a critique of the corrupted solution, and the target is the
//! reference solution under
//!
//! * RLTF's revision prompt (question, corrupted solution, critique),
//! * MulFeRL's regeneration prompt with its forced `<thinking><feedback>…</feedback>` prefix
//!   (context, not trained), or
//! * R^3L's guidance system message,
//!
//! in turn. A critique example (a share of the feedback examples, `critique_fraction`) instead
//! trains the critique itself under RLTF-FM's feedback-modelling prompt (`rltf_critique`), so
//! that the policy starts RL able to write the text RLTF-FM models. In every example only the
//! response (solution or critique) and its end-of-turn token are trained.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{
    CriticConfig, FeedbackProvider, FeedbackRequest, Templates, VerifierCritic,
};
use redraft_rollout_engine::prompts::{
    critique_message, guidance_system, guided_messages, problem_messages, regeneration_prompt,
    revision_message,
};
use redraft_tokenizer::Tokenizer;
use redraft_verifier::{Problem, Verifier};

use crate::error::Result;
use crate::rows::{Row, supervised_ids};

/// Corruption attempts before an example falls back to a plain one.
const CORRUPTION_TRIES: usize = 16;

/// Builds the SFT rows of `problems` (one each). Example `i` is a feedback example with
/// probability `revision_fraction`, and such an example is a critique example with probability
/// `critique_fraction` (else a revision), drawn from a generator seeded by `seed` and `i`;
/// `verifier` decides which corruptions are wrong and diagnoses them for the critique.
///
/// # Errors
/// [`crate::Error::Tokenizer`] or [`crate::Error::Rollout`] when a prompt cannot be rendered.
pub fn sft_rows(
    problems: &[Problem],
    tokenizer: &dyn Tokenizer,
    templates: &Templates,
    revision_fraction: f64,
    critique_fraction: f64,
    seed: u64,
    verifier: &dyn Verifier,
) -> Result<Vec<Row>> {
    let critic = VerifierCritic::new(CriticConfig::default());
    let mut rows = Vec::with_capacity(problems.len());
    let mut revisions = 0usize;
    for (i, problem) in problems.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i as u64);
        let solution = problem.solution();
        let revision = rng.random_bool(revision_fraction.clamp(0.0, 1.0));
        let corrupted = if revision {
            corrupt(problem, &solution, &mut rng, verifier)
        } else {
            None
        };
        let ids = match corrupted {
            None => supervised_ids(tokenizer, &problem_messages(problem), "", &solution)?,
            Some(wrong) => {
                let verdict = verifier.verify(problem, &wrong);
                let request = FeedbackRequest::new(problem.clone(), wrong.clone(), verdict);
                let critique = match critic.feedback(&[request]).pop() {
                    Some(Ok(f)) => f.text,
                    _ => String::new(),
                };
                // Drawn only when asked for, so that other settings keep their examples.
                let writes_critique =
                    critique_fraction > 0.0 && rng.random_bool(critique_fraction.min(1.0));
                let format = if writes_critique { 3 } else { revisions % 3 };
                revisions += usize::from(!writes_critique);
                match format {
                    0 => {
                        let m = revision_message(templates, problem, &wrong, &critique)?;
                        supervised_ids(tokenizer, &[m], "", &solution)?
                    }
                    1 => {
                        let (m, prefix) = regeneration_prompt(templates, problem, &critique, true)?;
                        supervised_ids(tokenizer, &[m], &prefix, &solution)?
                    }
                    2 => {
                        let guidance = guidance_system(templates, &critique)?;
                        let messages = guided_messages(&guidance, problem);
                        supervised_ids(tokenizer, &messages, "", &solution)?
                    }
                    _ => {
                        let m = critique_message(templates, problem, &wrong)?;
                        supervised_ids(tokenizer, &[m], "", &critique)?
                    }
                }
            }
        };
        rows.push(ids.into_row(i));
    }
    Ok(rows)
}

/// The solution with one digit changed so that the verifier rejects it, if one is found.
fn corrupt(
    problem: &Problem,
    solution: &str,
    rng: &mut ChaCha8Rng,
    verifier: &dyn Verifier,
) -> Option<String> {
    let digits: Vec<usize> = solution
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    if digits.is_empty() {
        return None;
    }
    for _ in 0..CORRUPTION_TRIES {
        let at = digits[rng.random_range(0..digits.len())];
        let old = solution.as_bytes()[at];
        let new = b'0' + ((old - b'0') + rng.random_range(1..10u8)) % 10;
        let mut bytes = solution.as_bytes().to_vec();
        bytes[at] = new;
        let candidate = String::from_utf8(bytes).ok()?;
        if !verifier.verify(problem, &candidate).correct {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use redraft_objectives::RowKind;
    use redraft_tokenizer::ByteTokenizer;
    use redraft_verifier::{Difficulty, TaskFamily};

    /// The tokenizer, twelve 2-digit additions and the default templates.
    fn setup() -> (ByteTokenizer, Vec<Problem>, Templates) {
        let problems = TaskFamily::Arithmetic
            .generate(1, 12, &Difficulty::from_pairs([("digits", "2")]))
            .unwrap();
        (ByteTokenizer::new(), problems, Templates::new())
    }

    /// The text of a row's trained targets (target `t` is `ids[t + 1]`).
    fn trained_text(tok: &ByteTokenizer, row: &Row) -> String {
        let trained: Vec<u32> = row
            .mask
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(t, _)| row.ids[t + 1])
            .collect();
        tok.decode(&trained, true).unwrap()
    }

    #[test]
    fn plain_and_revision_examples_train_only_the_solution() {
        let (tok, problems, templates) = setup();
        let plain = sft_rows(
            &problems,
            &tok,
            &templates,
            0.0,
            0.0,
            7,
            redraft_verifier::default_verifier(),
        )
        .unwrap();
        let mixed = sft_rows(
            &problems,
            &tok,
            &templates,
            1.0,
            0.0,
            7,
            redraft_verifier::default_verifier(),
        )
        .unwrap();
        for (p, (a, b)) in problems.iter().zip(plain.iter().zip(&mixed)) {
            assert_eq!(a.kind, RowKind::Auxiliary);
            // The trained ids decode to the solution and the end-of-turn token.
            for row in [a, b] {
                assert_eq!(trained_text(&tok, row), p.solution());
            }
            // Revision examples carry a longer context (the critique or guidance).
            assert!(b.ids.len() > a.ids.len());
        }
        // The three formats appear: RLTF's revision prompt, MulFeRL's forced prefix, R^3L's
        // guidance as a system message.
        let texts: Vec<String> = mixed
            .iter()
            .map(|r| tok.decode(&r.ids, false).unwrap())
            .collect();
        assert!(texts.iter().any(|t| t.contains("Expert Critique")));
        assert!(texts.iter().any(|t| t.contains("<feedback>")));
        assert!(texts.iter().any(|t| t.contains("<|im_start|>system")));
    }

    #[test]
    fn critique_examples_train_the_critique_under_the_feedback_modelling_prompt() {
        let (tok, problems, templates) = setup();
        let rows = sft_rows(
            &problems,
            &tok,
            &templates,
            1.0,
            1.0,
            7,
            redraft_verifier::default_verifier(),
        )
        .unwrap();
        for (p, row) in problems.iter().zip(&rows) {
            let text = tok.decode(&row.ids, false).unwrap();
            assert!(text.contains("Your task is provide a critique"), "{text}");
            let critique = trained_text(&tok, row);
            assert!(critique.contains("is wrong"), "{critique}");
            assert!(!critique.contains(&p.solution()), "{critique}");
        }
        // The same seed gives the same mix of examples.
        let mixed = |seed| {
            sft_rows(
                &problems,
                &tok,
                &templates,
                0.5,
                0.5,
                seed,
                redraft_verifier::default_verifier(),
            )
            .unwrap()
        };
        assert_eq!(mixed(3), mixed(3));
        assert_ne!(mixed(3), mixed(4));
    }
}
