//! Many rows in one PostgreSQL statement as one typed array per column.
//!
//! Short of `COPY`, this is the cheapest way to hand PostgreSQL a batch of
//! rows: each column travels as one array parameter in the binary protocol
//! (a `uuid[]`, a `timestamptz[]`, …), which `unnest` turns back into rows,
//! so the server decodes 16-byte UUIDs and 8-byte integers instead of
//! parsing text. Sending the same rows as one JSON document expanded by
//! `json_populate_recordset` cost a 500-row `messages` insert about 50% more
//! than `COPY`; arrays bring it close (issue #15, BENCHMARKS.md).
//!
//! A binary array cannot hold NULL through the driver we bind with, so each
//! row's NULLs travel as the bits of one extra `bigint` (bit `i` set: column
//! `i` is NULL), and a NULL cell is sent as its type's placeholder value,
//! which the statement never reads. The statement text depends only on the
//! columns and their types, never on the rows: it is prepared once per
//! connection.

use sea_orm::{Value, sea_query::ArrayType};

/// The most columns sent this way: a row's NULLs are the bits of one `bigint`.
const MAX_COLUMNS: usize = 63;

/// Rows as arrays, ready to bind.
pub(super) struct Arrays {
    /// One array per column, then the NULL bitmaps.
    params: Vec<Value>,
    /// Each column's element type, as PostgreSQL names it.
    types: Vec<&'static str>,
}

/// The array element type of a value, as the driver binds it and as
/// PostgreSQL names it; `None` for a type not sent this way.
fn element_type(v: &Value) -> Option<(ArrayType, &'static str)> {
    Some(match v {
        Value::Bool(_) => (ArrayType::Bool, "boolean"),
        Value::SmallInt(_) => (ArrayType::SmallInt, "smallint"),
        Value::Int(_) => (ArrayType::Int, "integer"),
        Value::BigInt(_) => (ArrayType::BigInt, "bigint"),
        Value::Double(_) => (ArrayType::Double, "double precision"),
        Value::String(_) => (ArrayType::String, "text"),
        Value::Uuid(_) => (ArrayType::Uuid, "uuid"),
        Value::TimeDate(_) => (ArrayType::TimeDate, "date"),
        Value::TimeDateTimeWithTimeZone(_) => (ArrayType::TimeDateTimeWithTimeZone, "timestamptz"),
        _ => return None,
    })
}

/// `v` itself when it is not NULL; else the placeholder of its type and
/// `true` (placeholders PostgreSQL accepts: a date must be in its range).
/// Only types [`element_type`] accepts reach here.
fn non_null(v: Value) -> (Value, bool) {
    match v {
        Value::Bool(None) => (Value::Bool(Some(false)), true),
        Value::SmallInt(None) => (Value::SmallInt(Some(0)), true),
        Value::Int(None) => (Value::Int(Some(0)), true),
        Value::BigInt(None) => (Value::BigInt(Some(0)), true),
        Value::Double(None) => (Value::Double(Some(0.0)), true),
        Value::String(None) => (Value::String(Some(String::new())), true),
        Value::Uuid(None) => (Value::Uuid(Some(uuid::Uuid::nil())), true),
        Value::TimeDate(None) => (
            Value::TimeDate(Some(time::OffsetDateTime::UNIX_EPOCH.date())),
            true,
        ),
        Value::TimeDateTimeWithTimeZone(None) => (
            Value::TimeDateTimeWithTimeZone(Some(time::OffsetDateTime::UNIX_EPOCH)),
            true,
        ),
        other => (other, false),
    }
}

impl Arrays {
    /// The rows as arrays, or the rows back when they cannot travel this
    /// way: more than [`MAX_COLUMNS`] columns, a type [`element_type`]
    /// does not send, or a column whose values are not all of one type.
    pub(super) fn of(width: usize, rows: Vec<Vec<Value>>) -> Result<Arrays, Vec<Vec<Value>>> {
        let Some(first) = rows.first() else {
            return Err(rows);
        };
        if width == 0 || width > MAX_COLUMNS || first.len() != width {
            return Err(rows);
        }
        let Some(kinds) = first
            .iter()
            .map(element_type)
            .collect::<Option<Vec<(ArrayType, &'static str)>>>()
        else {
            return Err(rows);
        };
        let uniform = rows.iter().all(|row| {
            row.len() == width
                && row
                    .iter()
                    .zip(first)
                    .all(|(v, f)| std::mem::discriminant(v) == std::mem::discriminant(f))
        });
        if !uniform {
            return Err(rows);
        }
        let mut columns: Vec<Vec<Value>> =
            (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
        let mut nulls: Vec<Value> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut bits: i64 = 0;
            for (i, cell) in row.into_iter().enumerate() {
                let (cell, null) = non_null(cell);
                if null {
                    bits |= 1 << i;
                }
                columns[i].push(cell);
            }
            nulls.push(Value::BigInt(Some(bits)));
        }
        let mut params: Vec<Value> = columns
            .into_iter()
            .zip(&kinds)
            .map(|(values, (ty, _))| Value::Array(ty.clone(), Some(Box::new(values))))
            .collect();
        params.push(Value::Array(ArrayType::BigInt, Some(Box::new(nulls))));
        Ok(Arrays {
            params,
            types: kinds.into_iter().map(|(_, name)| name).collect(),
        })
    }

    /// A sub-select yielding the rows with columns `names` (one per
    /// column, in order), its parameters numbered from `first_param`. With
    /// `declared`, each column is cast to the type given.
    pub(super) fn source(
        &self,
        names: &[&str],
        declared: Option<&[&str]>,
        first_param: usize,
    ) -> String {
        let n = self.types.len();
        let arrays = self
            .types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("CAST(${} AS {ty}[])", first_param + i))
            .chain([format!("CAST(${} AS bigint[])", first_param + n)])
            .collect::<Vec<_>>()
            .join(", ");
        let inner = (0..n)
            .map(|i| format!("c{i}"))
            .chain(["nulls".to_owned()])
            .collect::<Vec<_>>()
            .join(", ");
        let cells = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let cell = format!("CASE WHEN (u.nulls & {}) = 0 THEN u.c{i} END", 1_i64 << i);
                match declared.and_then(|d| d.get(i)) {
                    Some(ty) => format!("CAST({cell} AS {ty}) AS \"{name}\""),
                    None => format!("{cell} AS \"{name}\""),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("(SELECT {cells} FROM unnest({arrays}) AS u({inner}))")
    }

    /// The parameters to bind, in [`Arrays::source`]'s order.
    pub(super) fn into_params(self) -> Vec<Value> {
        self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_become_bits_and_placeholders() {
        let rows = vec![
            vec![Value::Uuid(None), Value::BigInt(Some(7))],
            vec![Value::Uuid(Some(uuid::Uuid::max())), Value::BigInt(None)],
        ];
        let Ok(arrays) = Arrays::of(2, rows) else {
            panic!("uniform supported rows must convert")
        };
        let params = arrays.into_params();
        assert_eq!(params.len(), 3);
        assert_eq!(
            params[2],
            Value::Array(
                ArrayType::BigInt,
                Some(Box::new(vec![
                    Value::BigInt(Some(1)),
                    Value::BigInt(Some(2))
                ]))
            )
        );
        assert_eq!(
            params[1],
            Value::Array(
                ArrayType::BigInt,
                Some(Box::new(vec![
                    Value::BigInt(Some(7)),
                    Value::BigInt(Some(0))
                ]))
            )
        );
    }

    #[test]
    fn mixed_or_unsupported_columns_are_given_back() {
        let mixed = vec![vec![Value::BigInt(Some(1))], vec![Value::Int(Some(1))]];
        assert!(matches!(Arrays::of(1, mixed), Err(rows) if rows.len() == 2));
        let json = vec![vec![Value::Json(None)]];
        assert!(Arrays::of(1, json).is_err());
    }
}
