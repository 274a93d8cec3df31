//! The hash mask: hex HMAC-SHA256 of a value's text form, keyed per agreement, as a
//! DataFusion scalar function.
//!
//! The key of an agreement is derived from a provider secret and the agreement id
//! ([`MaskKey::derive`]): a masked value is stable within one agreement (joinable, countable)
//! but differs between agreements, and without the provider's secret nobody can confirm a
//! guess (an unsalted hash of a name or a meter id is reversed by hashing candidates).
//!
//! It is used only inside enforcement views, never registered in the consumer's session:
//! consumers see its results, they cannot call it.

use std::sync::Arc;

use arrow::array::{Array, StringBuilder, as_string_array};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The secret key of one agreement's hash masks. Its `Debug` form never shows the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MaskKey([u8; 32]);

impl MaskKey {
    /// The key of `agreement_id`: HMAC-SHA256(`provider_secret`, label ‖ agreement id).
    pub fn derive(provider_secret: &[u8], agreement_id: &str) -> Self {
        let mut mac = keyed(provider_secret);
        mac.update(b"sluis mask key v1\0");
        mac.update(agreement_id.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }

    /// Lower-case hex HMAC-SHA256 of `value` under this key.
    pub fn mask(&self, value: &[u8]) -> String {
        let mut mac = keyed(&self.0);
        mac.update(value);
        hex::encode(mac.finalize().into_bytes())
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"))
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

/// `sluis_mask(text) -> text`: [`MaskKey::mask`] of the UTF-8 bytes; NULL stays NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HmacHex {
    signature: Signature,
    key: MaskKey,
}

impl ScalarUDFImpl for HmacHex {
    fn name(&self) -> &str {
        "sluis_mask"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let text = as_string_array(&input);
        // the key schedule once per batch; each value then costs two SHA-256 compressions
        let keyed_mac = keyed(&self.key.0);
        let mut masked = StringBuilder::with_capacity(text.len(), text.len() * 64);
        let mut hex_out = [0u8; 64];
        for value in text.iter() {
            match value {
                None => masked.append_null(),
                Some(s) => {
                    let mut mac = keyed_mac.clone();
                    mac.update(s.as_bytes());
                    hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex_out)
                        .map_err(|e| DataFusionError::Internal(format!("hex: {e}")))?;
                    // hex digits are ASCII
                    masked.append_value(std::str::from_utf8(&hex_out).unwrap_or_default());
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(masked.finish())))
    }
}

/// The hash mask function under `key`.
pub fn hmac_hex(key: MaskKey) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(HmacHex {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_stable_within_an_agreement_and_differ_between_agreements() {
        let secret = b"provider secret";
        let a = MaskKey::derive(secret, "urn:agreement:a");
        let b = MaskKey::derive(secret, "urn:agreement:b");
        assert_eq!(a.mask(b"meter-17"), a.mask(b"meter-17"));
        assert_ne!(a.mask(b"meter-17"), a.mask(b"meter-18"));
        assert_ne!(a.mask(b"meter-17"), b.mask(b"meter-17"));
        // another provider's secret gives other masks for the same agreement
        let other = MaskKey::derive(b"other secret", "urn:agreement:a");
        assert_ne!(a.mask(b"meter-17"), other.mask(b"meter-17"));
        assert_eq!(a.mask(b"x").len(), 64);
        assert_eq!(format!("{a:?}"), "MaskKey(..)");
    }
}
