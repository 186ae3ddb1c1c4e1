//! Objects added to or removed from a lab as a topology file would declare them: the model is
//! exported, the document edited, and the text checked again by the one validation. The change
//! engine creates and deletes whole objects this way, so a new VPC gets its implicit default
//! group, ACL and main table, and every index is assigned, exactly as if the file had said so.

use toml_edit::{value, Array, ArrayOfTables, InlineTable, Item, Table, Value};

use super::{export::document, parse, Problem, TopologyError};
use crate::model::Model;

/// A value as the topology file writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A string.
    Text(String),
    /// A list of strings (an ENI's `security_groups`).
    Texts(Vec<String>),
    /// An integer.
    Int(i64),
    /// An inline table (an ENI's `attachment`).
    Table(Vec<(&'static str, Field)>),
}

impl Field {
    fn value(&self) -> Value {
        match self {
            Field::Text(s) => s.as_str().into(),
            Field::Texts(v) => Value::Array(v.iter().map(String::as_str).collect::<Array>()),
            Field::Int(n) => (*n).into(),
            Field::Table(fields) => {
                let mut t = InlineTable::new();
                for (k, f) in fields {
                    t.insert(*k, f.value());
                }
                Value::InlineTable(t)
            }
        }
    }
}

/// One edit of the document, by section (`vpc`, `subnet`, ...) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocEdit {
    /// Declares one more `[[section]]` with these fields (`id` among them).
    Add {
        /// The section.
        section: &'static str,
        /// Its fields, in the order written.
        fields: Vec<(&'static str, Field)>,
    },
    /// Removes the `[[section]]` whose `id` is `id`.
    Remove {
        /// The section.
        section: &'static str,
        /// The id.
        id: String,
    },
}

/// `m` with `edits` made to its topology document, checked as a file is. Removing an id that
/// is not declared is a problem like any other.
pub fn edited(m: &Model, edits: &[DocEdit]) -> Result<Model, TopologyError> {
    const FILE: &str = "the changed lab";
    let mut doc = document(m);
    for e in edits {
        match e {
            DocEdit::Add { section, fields } => {
                let mut t = Table::new();
                for (k, f) in fields {
                    t[*k] = value(f.value());
                }
                let item = doc.entry(section).or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
                match item.as_array_of_tables_mut() {
                    Some(list) => list.push(t),
                    None => return Err(problem(FILE, section, format!("`{section}` is not a list of tables"))),
                }
            }
            DocEdit::Remove { section, id } => {
                let list = doc.get_mut(section).and_then(Item::as_array_of_tables_mut);
                let at =
                    list.as_ref().and_then(|l| l.iter().position(|t| t.get("id").and_then(Item::as_str) == Some(id)));
                match (list, at) {
                    (Some(l), Some(i)) => {
                        l.remove(i);
                        if l.is_empty() {
                            doc.remove(section);
                        }
                    }
                    _ => return Err(problem(FILE, section, format!("no {section} `{id}` is declared"))),
                }
            }
        }
    }
    parse(&doc.to_string(), FILE)
}

fn problem(file: &str, field: &str, message: String) -> TopologyError {
    TopologyError { problems: vec![Problem { file: file.into(), line: 0, field: field.into(), message }] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::DEFAULT_TOPOLOGY;

    #[test]
    fn an_added_vpc_gets_its_implicit_objects_and_a_removed_one_takes_them_along() {
        let m = parse(DEFAULT_TOPOLOGY, "default.toml").unwrap();
        let add = DocEdit::Add {
            section: "vpc",
            fields: vec![("id", Field::Text("vpc-new".into())), ("cidr", Field::Text("10.9.0.0/16".into()))],
        };
        let n = edited(&m, &[add]).unwrap();
        assert_eq!(n.vpcs.len(), m.vpcs.len() + 1);
        for id in ["vpc-new/default", "vpc-new/main"] {
            assert!(n.security_groups.iter().any(|g| g.id == id) || n.route_tables.iter().any(|t| t.id == id), "{id}");
        }
        let back = edited(&n, &[DocEdit::Remove { section: "vpc", id: "vpc-new".into() }]).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&m).unwrap());
    }

    #[test]
    fn removing_what_is_not_there_or_what_is_still_used_is_refused() {
        let m = parse(DEFAULT_TOPOLOGY, "default.toml").unwrap();
        let gone = edited(&m, &[DocEdit::Remove { section: "vpc", id: "vpc-nope".into() }]).unwrap_err();
        assert!(gone.problems[0].message.contains("vpc-nope"), "{gone}");
        // A subnet still names the VPC: the validation says so.
        let used = edited(&m, &[DocEdit::Remove { section: "vpc", id: m.vpcs[0].id.clone() }]).unwrap_err();
        assert!(used.to_string().contains("does not exist"), "{used}");
    }
}
