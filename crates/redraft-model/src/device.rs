//! Choosing the compute device at run time: `cpu`, `wgpu` or `cuda[:N]`.
//!
//! The same model code runs on every backend: burn 0.22 tensors carry a runtime device instead of
//! a backend type parameter. Devices are always built explicitly from the user's choice, never
//! with `Device::default()`, which silently prefers a GPU when a GPU feature is compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// A device named on the command line or in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// burn's pure-Rust `flex` CPU backend (the default).
    #[default]
    Cpu,
    /// The `wgpu` backend (Vulkan, Metal, DX12); needs the `wgpu` feature.
    Wgpu,
    /// The CUDA GPU with this index; needs the `cuda` feature.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Device {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        match s {
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(index) => index
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| bad("expected cuda:N with N a GPU index")),
                None => Err(bad("expected cpu, wgpu, cuda or cuda:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The burn device for inference (no autodiff). Fails with a typed error when the backend
    /// was not compiled into this build.
    pub fn device(&self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Self::Cuda(i) => Ok(Device::cuda(*i)),
            #[allow(unreachable_patterns, reason = "reachable when a GPU feature is off")]
            other => Err(other.not_built()),
        }
    }

    /// Whether this build includes the backend, without touching the hardware: a typed error
    /// naming the feature to build with when it does not.
    pub fn check_built(&self) -> Result<()> {
        let built = match self {
            Self::Cpu => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda(_) => cfg!(feature = "cuda"),
        };
        if built { Ok(()) } else { Err(self.not_built()) }
    }

    fn not_built(&self) -> Error {
        let feature = if matches!(self, Self::Wgpu) {
            "wgpu"
        } else {
            "cuda"
        };
        Error::Device {
            spec: self.to_string(),
            reason: format!(
                "this build does not include that backend; rebuild with `--features {feature}`"
            ),
        }
    }

    /// The burn device for training (the inference device with autodiff).
    pub fn train_device(&self) -> Result<Device> {
        Ok(self.device()?.autodiff())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_left_out_of_the_build_are_named() {
        assert!(DeviceSpec::Cpu.check_built().is_ok());
        let cases = [
            (DeviceSpec::Wgpu, "wgpu", cfg!(feature = "wgpu")),
            (DeviceSpec::Cuda(1), "cuda", cfg!(feature = "cuda")),
        ];
        for (spec, feature, built) in cases {
            match spec.check_built() {
                Ok(()) => assert!(built),
                Err(e) => {
                    assert!(!built);
                    assert!(
                        e.to_string().contains(&format!("--features {feature}")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn parses_device_strings() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("wgpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Wgpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!(
            "tpu"
                .parse::<DeviceSpec>()
                .unwrap_err()
                .to_string()
                .contains("expected cpu")
        );
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_is_always_available() {
        assert!(DeviceSpec::Cpu.device().is_ok());
    }
}
