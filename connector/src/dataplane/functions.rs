//! The scalar functions a consumer's query can call.
//!
//! DataFusion's defaults, with two changes:
//! - **Not registered** ([`WITHHELD`]): functions that tell the engine's version or the
//!   server's files (`version()`, `input_file_name()`, ...). A query naming them gets the
//!   same answer as for any unknown function.
//! - **Bounded** ([`bounded_growth`]): functions whose result can be much larger than their
//!   arguments (`repeat`, `lpad`, `concat`, `array_repeat`, `range`, `replace`, ...). Their
//!   results are allocated outside the query's memory pool, so one call such as
//!   `repeat(x, 1e9)` asked the allocator for 67 GB and aborted the process. Each call first
//!   works out, from its arguments, an upper bound of what it will produce, and refuses
//!   (`RESOURCES_EXHAUSTED`) beyond [`MAX_VALUE_BYTES`] for one value or [`MAX_CALL_BYTES`]
//!   for one batch. Since nesting multiplies (`encode(encode(...))`, `translate`), every
//!   function whose result can outgrow its largest argument is bounded, and a query may hold
//!   at most [`MAX_GROWING_CALLS`] such calls: at most 16 x 64 MiB = 1 GiB outside the pool
//!   per batch at the very worst (the caps are on upper bounds; real results are smaller).
//!
//! The `||` operator on strings is bounded too: [`bound_calls`] plans `l || r` as the bounded
//! `concat(l, r)` where neither side is NULL (and NULL otherwise, as `||` is), and counts it
//! as a growing call. Unbounded, each `||` in a chain of CTEs (`s || s AS s`) doubled a value
//! outside the memory pool.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateDefaults;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, when,
};

use super::QueryError;

/// Largest value a size-growing function may produce: 1 MiB (of text, or of list elements).
pub const MAX_VALUE_BYTES: u64 = 1 << 20;
/// Largest output of one call of a size-growing function over one batch: 64 MiB (a batch of
/// 4,096 values of 2 kB, upper-cased, may take 24 MiB at worst).
pub const MAX_CALL_BYTES: u64 = 64 << 20;
/// Most calls of size-growing functions in one planned query.
pub const MAX_GROWING_CALLS: usize = 16;
/// Largest edit-distance table of one `levenshtein` value, and of one call over a batch:
/// the function takes time in the product of its arguments' lengths.
const MAX_LEVENSHTEIN_CELLS: (u64, u64) = (1 << 24, 1 << 28);

/// Functions not registered: they tell the engine and its version, or the server's files.
pub const WITHHELD: [&str; 5] = [
    "version",
    "input_file_name",
    "file_row_index",
    "arrow_metadata",
    "arrow_field",
];

/// How the output of a bounded function grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad`/`rpad(s, n[, fill])`: `n` characters of up to 4 bytes.
    Pad,
    /// The sum of the arguments (`concat`, `make_array`, `array_concat`, `overlay`, ...).
    Sum,
    /// `concat_ws(sep, a, b, ...)`: the arguments and a separator between each two.
    ConcatWs,
    /// At most `factor` times the first argument (`encode`, `translate`, `upper`, ...).
    Scaled(u64),
    /// `replace(s, from, to)`: `to` at every position of `s` at worst.
    Replace,
    /// `regexp_replace(s, pattern, replacement[, flags])`: the replacement at every position,
    /// each reference to a group expanding to at most the whole string.
    RegexpReplace,
    /// `array_repeat(x, n)`: `n` copies of `x`.
    ArrayRepeat,
    /// `array_resize(a, n[, v])`: `a` and `n` copies of `v`.
    Resize,
    /// `range`/`generate_series(start, stop[, step])` (`true`: the stop included).
    Series(bool),
    /// `array_to_string(a, sep[, null])`, `array_replace_all(a, from, to)`: each element
    /// (at least one byte of `a`) followed by, or replaced with, the other arguments.
    PerElement,
    /// `string_to_array(s, sep[, null])`: each byte of `s` an element at worst.
    StringToArray,
    /// `levenshtein(a, b)`: the product of the lengths (time, not memory).
    Levenshtein,
}

impl Growth {
    /// The bounded functions, by name.
    const FUNCTIONS: [(&'static str, Growth); 30] = [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
        ("concat", Growth::Sum),
        ("concat_ws", Growth::ConcatWs),
        ("overlay", Growth::Sum),
        ("replace", Growth::Replace),
        ("regexp_replace", Growth::RegexpReplace),
        ("translate", Growth::Scaled(4)),
        ("upper", Growth::Scaled(3)),
        ("lower", Growth::Scaled(3)),
        ("initcap", Growth::Scaled(3)),
        ("encode", Growth::Scaled(2)),
        ("to_hex", Growth::Scaled(2)),
        ("make_array", Growth::Sum),
        ("array_concat", Growth::Sum),
        ("array_append", Growth::Sum),
        ("array_prepend", Growth::Sum),
        ("array_union", Growth::Sum),
        ("array_repeat", Growth::ArrayRepeat),
        ("array_resize", Growth::Resize),
        ("range", Growth::Series(false)),
        ("generate_series", Growth::Series(true)),
        ("array_to_string", Growth::PerElement),
        ("string_to_array", Growth::StringToArray),
        ("levenshtein", Growth::Levenshtein),
        ("map", Growth::Sum),
        ("arrays_zip", Growth::Sum),
        ("array_replace_all", Growth::PerElement),
        ("array_replace_n", Growth::PerElement),
    ];

    /// The limits (one value, one call over a batch) of the estimate.
    fn caps(self) -> (u64, u64) {
        match self {
            Growth::Levenshtein => MAX_LEVENSHTEIN_CELLS,
            _ => (MAX_VALUE_BYTES, MAX_CALL_BYTES),
        }
    }

    /// An upper bound of the output at `row` (bytes; cells for `levenshtein`).
    fn estimate(self, args: &Args, row: usize) -> u64 {
        let len = |i: usize| args.len(i, row);
        let count = |i: usize| args.int(i, row).map_or(0, |n| n.max(0) as u64);
        let sum = |from: usize| {
            (from..args.count())
                .map(len)
                .fold(0u64, u64::saturating_add)
        };
        let plus = u64::saturating_add;
        let times = u64::saturating_mul;
        match self {
            Growth::Repeat => times(len(0), count(1)),
            Growth::Pad => plus(times(count(1), 4), len(0)),
            Growth::Sum => plus(sum(0), times(args.count() as u64, 8)),
            Growth::ConcatWs => {
                let separators = times(len(0), args.count().saturating_sub(2) as u64);
                plus(sum(1), separators)
            }
            Growth::Scaled(factor) => plus(times(len(0), factor), 16),
            Growth::Replace => plus(len(0), times(plus(len(0), 1), len(2))),
            Growth::RegexpReplace => {
                let positions = plus(times(len(0), 2), 1);
                plus(len(0), times(positions, len(2)))
            }
            Growth::ArrayRepeat => times(plus(len(0), 8), count(1)),
            Growth::Resize => {
                let fill = if args.count() > 2 { len(2) } else { 0 };
                plus(len(0), times(plus(fill, 8), count(1)))
            }
            Growth::Series(inclusive) => times(series_len(args, row, inclusive), 8),
            Growth::PerElement => times(len(0), plus(sum(1), 1)),
            Growth::StringToArray => times(plus(len(0), 1), 16),
            Growth::Levenshtein => times(len(0), len(1)),
        }
    }
}

/// Elements of `range`/`generate_series` at `row`; `u64::MAX` where it cannot be told
/// cheaply (dates and times: refused, since a step of one nanosecond over years would
/// allocate without end).
fn series_len(args: &Args, row: usize, inclusive: bool) -> u64 {
    if !args.all_integers() {
        return u64::MAX;
    }
    let (start, stop, step) = match args.count() {
        1 => (Some(0), args.int(0, row), Some(1)),
        2 => (args.int(0, row), args.int(1, row), Some(1)),
        _ => (args.int(0, row), args.int(1, row), args.int(2, row)),
    };
    let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
        return 0;
    };
    if step == 0 {
        return 0;
    }
    let span = (i128::from(stop) - i128::from(start)) / i128::from(step);
    let n = if inclusive { span + 1 } else { span.max(0) + 1 };
    u64::try_from(n.max(0)).unwrap_or(u64::MAX)
}

/// The arguments of one call, with per-row access to their sizes and integer values.
struct Args {
    /// Each argument as an array; scalars as one-row arrays.
    arrays: Vec<(ArrayRef, bool)>,
    /// Each integer argument cast to Int64 (None: not an integer).
    ints: Vec<Option<Int64Array>>,
}

impl Args {
    fn new(args: &[ColumnarValue]) -> DfResult<Self> {
        let mut arrays = Vec::with_capacity(args.len());
        let mut ints = Vec::with_capacity(args.len());
        for arg in args {
            let (array, scalar) = match arg {
                ColumnarValue::Array(a) => (Arc::clone(a), false),
                ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
            };
            ints.push(if array.data_type().is_integer() {
                let cast = arrow::compute::cast(&array, &DataType::Int64)?;
                Some(cast.as_primitive::<arrow::datatypes::Int64Type>().clone())
            } else {
                None
            });
            arrays.push((array, scalar));
        }
        Ok(Self { arrays, ints })
    }

    fn count(&self) -> usize {
        self.arrays.len()
    }

    fn all_integers(&self) -> bool {
        self.ints.iter().all(Option::is_some)
    }

    fn index(&self, i: usize, row: usize) -> Option<(&ArrayRef, usize)> {
        let (array, scalar) = self.arrays.get(i)?;
        let row = if *scalar { 0 } else { row };
        (!array.is_null(row)).then_some((array, row))
    }

    /// The integer value of argument `i` at `row`, if it is an integer and not NULL.
    fn int(&self, i: usize, row: usize) -> Option<i64> {
        let (_, row) = self.index(i, row)?;
        let ints = self.ints.get(i)?.as_ref()?;
        (!ints.is_null(row)).then(|| ints.value(row))
    }

    /// The size in bytes of argument `i` at `row` (0 for NULL or a missing argument).
    fn len(&self, i: usize, row: usize) -> u64 {
        self.index(i, row)
            .map_or(0, |(array, row)| value_bytes(array.as_ref(), row))
    }
}

/// The bytes of one value: a string's or binary's length, a list's elements, else the width
/// of the type.
fn value_bytes(array: &dyn Array, row: usize) -> u64 {
    let bytes = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len(),
        DataType::Utf8View => array.as_string_view().value(row).len(),
        DataType::Binary => array.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len(),
        DataType::BinaryView => array.as_binary_view().value(row).len(),
        DataType::List(_) => slice_bytes(&array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => slice_bytes(&array.as_list::<i64>().value(row)),
        DataType::FixedSizeList(..) => slice_bytes(&array.as_fixed_size_list().value(row)),
        other => other.primitive_width().unwrap_or(16),
    };
    bytes as u64
}

fn slice_bytes(array: &ArrayRef) -> usize {
    array
        .to_data()
        .get_slice_memory_size()
        .unwrap_or(usize::MAX)
}

/// A size-growing function that checks the bound of its output before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
}

impl Bounded {
    /// Refuses a call whose output could pass the caps.
    fn check(&self, args: &ScalarFunctionArgs) -> DfResult<()> {
        let view = Args::new(&args.args)?;
        let all_scalar = view.arrays.iter().all(|(_, scalar)| *scalar);
        let rows = if all_scalar { 1 } else { args.number_rows };
        let (value_cap, call_cap) = self.growth.caps();
        let mut total = 0u64;
        for row in 0..rows {
            let estimate = self.growth.estimate(&view, row);
            total = total.saturating_add(estimate);
            if estimate > value_cap || total > call_cap {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{}: the result would exceed {} bytes per value or {} per batch",
                    self.inner.name(),
                    value_cap,
                    call_cap
                )));
            }
        }
        Ok(())
    }
}

/// Delegates everything but the check and `simplify`: a simplification may return a call of
/// the unbounded function.
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// The bounded versions of the size-growing functions, by name.
fn bounded_growth() -> &'static HashMap<&'static str, Arc<ScalarUDF>> {
    static BOUNDED: LazyLock<HashMap<&'static str, Arc<ScalarUDF>>> = LazyLock::new(|| {
        let defaults = SessionStateDefaults::default_scalar_functions();
        Growth::FUNCTIONS
            .iter()
            .filter_map(|(name, growth)| {
                let inner = defaults.iter().find(|f| f.name() == *name)?;
                let bounded = Bounded {
                    inner: Arc::clone(inner.inner()).into(),
                    growth: *growth,
                };
                Some((*name, Arc::new(ScalarUDF::new_from_impl(bounded))))
            })
            .collect()
    });
    &BOUNDED
}

/// The scalar functions of a consumer's session: DataFusion's, without [`WITHHELD`] and
/// with the size-growing ones bounded.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    SessionStateDefaults::default_scalar_functions()
        .into_iter()
        .filter(|f| !WITHHELD.contains(&f.name()))
        .map(|f| match bounded_growth().get(f.name()) {
            Some(bounded) => Arc::clone(bounded),
            None => f,
        })
        .collect()
}

fn is_bounded(f: &ScalarUDF) -> bool {
    (f.inner().as_ref() as &dyn Any).is::<Bounded>()
}

/// Bounds every size-growing call in `plan`, including those the SQL planner builds itself
/// (`[a, b]` is `make_array`, `||` on lists is `array_concat`), and refuses a plan with more
/// than [`MAX_GROWING_CALLS`] of them.
pub fn bound_calls(plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
    let mut calls = 0usize;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                    Expr::ScalarFunction(mut f) => {
                        let bounded = bounded_growth().get(f.func.name());
                        match bounded {
                            Some(b) => {
                                calls += 1;
                                if is_bounded(&f.func) {
                                    Ok(Transformed::no(Expr::ScalarFunction(f)))
                                } else {
                                    f.func = Arc::clone(b);
                                    Ok(Transformed::yes(Expr::ScalarFunction(f)))
                                }
                            }
                            None => Ok(Transformed::no(Expr::ScalarFunction(f))),
                        }
                    }
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::StringConcat,
                        right,
                    }) => {
                        calls += 1;
                        Ok(Transformed::yes(bounded_string_concat(*left, *right)?))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map_err(super::error::planning_error)?
        .data;
    if calls > MAX_GROWING_CALLS {
        return Err(QueryError::refused(
            "query-size",
            format!(
                "the query calls functions that build larger values ({}) more than {MAX_GROWING_CALLS} times",
                "repeat, lpad, concat, replace, array_repeat, range, ..."
            ),
        ));
    }
    Ok(plan)
}

/// `l || r` on strings as the bounded `concat`: NULL when either side is NULL, as `||` is
/// (`concat` skips NULLs). Arrays never reach here: the SQL planner plans `||` on lists as
/// `array_concat`, which is bounded as a function.
fn bounded_string_concat(left: Expr, right: Expr) -> DfResult<Expr> {
    let concat = Arc::clone(&bounded_growth()["concat"]);
    let joined = Expr::ScalarFunction(ScalarFunction::new_udf(
        concat,
        vec![left.clone(), right.clone()],
    ));
    when(
        left.is_null().or(right.is_null()),
        Expr::Literal(datafusion::common::ScalarValue::Utf8(None), None),
    )
    .otherwise(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::config::ConfigOptions;

    /// A scalar value's size in bytes.
    fn scalar_bytes(value: &ScalarValue) -> u64 {
        let array = value.to_array_of_size(1).unwrap();
        value_bytes(array.as_ref(), 0)
    }

    fn call(name: &str, args: Vec<ColumnarValue>, rows: usize) -> DfResult<ColumnarValue> {
        let f = bounded_growth()[name].clone();
        let arg_fields: Vec<FieldRef> = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let return_field = f.return_field_from_args(ReturnFieldArgs {
            arg_fields: &arg_fields,
            scalar_arguments: &vec![None; arg_fields.len()],
        })?;
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: rows,
            return_field,
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    fn text(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.into())))
    }

    fn int(n: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))
    }

    fn exhausted(r: DfResult<ColumnarValue>) -> bool {
        matches!(r, Err(DataFusionError::ResourcesExhausted(_)))
    }

    /// Each growing function refuses a result past the caps before allocating it, and
    /// still computes small ones.
    #[test]
    fn growing_functions_refuse_huge_results_and_compute_small_ones() {
        assert!(exhausted(call("repeat", vec![text("ab"), int(1 << 30)], 1)));
        assert!(exhausted(call("lpad", vec![text("a"), int(1 << 30)], 1)));
        assert!(exhausted(call(
            "rpad",
            vec![text("a"), int(1 << 30), text("xy")],
            1
        )));
        assert!(exhausted(call(
            "array_repeat",
            vec![int(1), int(1 << 30)],
            1
        )));
        assert!(exhausted(call("range", vec![int(0), int(1 << 40)], 1)));
        assert!(exhausted(call("generate_series", vec![int(1 << 40)], 1)));
        let big = "x".repeat(600 * 1024);
        assert!(exhausted(call("concat", vec![text(&big), text(&big)], 1)));
        assert!(exhausted(call(
            "replace",
            vec![text(&big), text("x"), text("yy")],
            1
        )));
        assert!(exhausted(call(
            "levenshtein",
            vec![text(&big), text(&big)],
            1
        )));
        // a column of 4,096 values of 20 kB each: 80 MiB per batch, past the call cap
        let column = ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec![
                "y".repeat(20 * 1024);
                4096
            ])));
        assert!(exhausted(call("concat", vec![column, text("z")], 4096)));
        let small = ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec![
                "y".repeat(2 * 1024);
                4096
            ])));
        assert!(call("upper", vec![small], 4096).is_ok());

        let ColumnarValue::Scalar(s) = call("repeat", vec![text("ab"), int(3)], 1).unwrap() else {
            panic!("a scalar")
        };
        assert_eq!(s, ScalarValue::Utf8(Some("ababab".into())));
        assert!(call("range", vec![int(0), int(10)], 1).is_ok());
        assert_eq!(scalar_bytes(&ScalarValue::Utf8(Some("abc".into()))), 3);
    }

    #[test]
    fn withheld_functions_are_not_registered() {
        let names: Vec<String> = scalar_functions()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for name in WITHHELD {
            assert!(!names.iter().any(|n| n == name), "{name}");
        }
        for (name, _) in Growth::FUNCTIONS {
            let f = scalar_functions().into_iter().find(|f| f.name() == name);
            assert!(f.is_some_and(|f| is_bounded(&f)), "{name} is bounded");
        }
    }
}
