//! Closed sets that travel on the wire: platform drivers and key algorithms.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name that is not one of a closed set's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} (expected one of: {expected})")]
pub struct UnknownVariant {
    /// What kind of name it was meant to be ("driver", "key algorithm").
    pub kind: &'static str,
    /// The value that did not parse.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: String,
}

macro_rules! closed_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and config spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use closed_enum;

closed_enum!(
    /// A platform driver: how certfleet reaches a device and installs a certificate.
    /// Each driver has its own job queue, `certfleet.jobs.<driver>`.
    Driver, "driver", {
        /// Files on the worker's own host.
        Local => "local",
        /// A Linux host reached over SSH: key and CSR made with `openssl` on the host,
        /// files installed atomically, a reload command run.
        LinuxSsh => "linux-ssh",
        /// HAProxy: key and CSR made over SSH, the bundle hot-swapped through the
        /// runtime API (`set ssl cert` + `commit ssl cert`) and written to disk.
        Haproxy => "haproxy",
        /// A Linux EC2 (or hybrid) instance reached through AWS Systems Manager Run Command.
        AwsSsm => "aws-ssm",
        /// A Palo Alto Networks firewall (PAN-OS 9/10) through its XML API.
        Panos => "panos",
    }
);

closed_enum!(
    /// The algorithm of the key generated on the device for a rotation.
    KeyAlgorithm, "key algorithm", {
        /// ECDSA on NIST P-256 (the default).
        EcdsaP256 => "ecdsa-p256",
        /// ECDSA on NIST P-384.
        EcdsaP384 => "ecdsa-p384",
        /// RSA, 2048-bit modulus.
        Rsa2048 => "rsa-2048",
        /// RSA, 3072-bit modulus.
        Rsa3072 => "rsa-3072",
        /// RSA, 4096-bit modulus.
        Rsa4096 => "rsa-4096",
    }
);

#[allow(clippy::derivable_impls)] // the enum is macro-generated
impl Default for KeyAlgorithm {
    fn default() -> Self {
        Self::EcdsaP256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_round_trip_and_unknown_names_list_choices() {
        for d in Driver::ALL {
            assert_eq!(d.as_str().parse::<Driver>(), Ok(*d));
        }
        let err = "telnet".parse::<Driver>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown driver \"telnet\" (expected one of: local, linux-ssh, haproxy, aws-ssm, panos)"
        );
    }

    #[test]
    fn key_algorithm_defaults_to_p256() {
        assert_eq!(KeyAlgorithm::default().as_str(), "ecdsa-p256");
        assert!("rsa-1024".parse::<KeyAlgorithm>().is_err());
    }
}
