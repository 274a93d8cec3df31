//! The hash mask: hex SHA-256 of a value's text form, as a DataFusion scalar function.
//!
//! It is used only inside enforcement views, never registered in the consumer's session:
//! consumers see its results, they cannot call it.

use std::sync::Arc;

use arrow::array::{Array, StringArray, as_string_array};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};

/// `sluis_sha256_hex(text) -> text`: lower-case hex SHA-256 of the UTF-8 bytes; NULL stays NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Sha256Hex {
    signature: Signature,
}

impl ScalarUDFImpl for Sha256Hex {
    fn name(&self) -> &str {
        "sluis_sha256_hex"
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
        let hashed: StringArray = text
            .iter()
            .map(|v| v.map(|s| hex::encode(Sha256::digest(s.as_bytes()))))
            .collect();
        debug_assert_eq!(hashed.len(), text.len());
        Ok(ColumnarValue::Array(Arc::new(hashed)))
    }
}

/// The hash mask function.
pub fn sha256_hex() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Sha256Hex {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    }))
}
