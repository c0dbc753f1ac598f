//! The limits the edge and the registry enforce, written into the published
//! document so that it promises neither more nor less than the server does.
//!
//! utoipa derives shapes from the Rust types; the rules live in the domain's
//! validation (`locksmith-domain`) and in the edge's parsers. They are
//! stated once here, next to each other, and applied to the generated
//! document by schema and property name.

use serde_json::{Value, json};

/// Tenant, org, bot, user and integration ids (`locksmith_domain::ids`).
pub const SLUG: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// API key ids: 16 lowercase hex characters.
pub const KEY_ID: &str = "^[0-9a-f]{16}$";
/// Keys of settings and labels.
const MAP_KEY: &str = "^[a-z0-9][a-z0-9_.-]{0,63}$";
/// No control characters (Unicode Cc, what `char::is_control` refuses).
const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";
/// No control characters, and something besides white space.
const NAME: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";
/// Dot-separated DNS labels of letters, digits and inner hyphens.
const DNS_NAME: &str = "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
/// `local@domain`, the local part printable ASCII without `@`, `<`, `>`.
const EMAIL: &str = "^[!-;=?A-~]+@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
/// One segment of a secret name (`locksmith_domain::secrets`); a name of
/// several segments is written as that many path segments.
const SECRET_NAME_SEGMENT: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
/// Field names of a secret.
const SECRET_FIELD: &str = "^[a-z0-9._-]{1,64}$";
/// Largest quota (`locksmith_domain::tenant::MAX_QUOTA`).
const MAX_QUOTA: u64 = 10_000_000;

/// Request bodies whose fields carry the rules below.
const REQUEST_BODIES: &[&str] = &[
    "CreateTenant",
    "PatchTenant",
    "CreateMember",
    "CreateUser",
    "PatchMember",
    "PatchUser",
    "CreateTenantKey",
    "CreateOperatorKey",
    "Quotas",
    "PutSecret",
];

/// Fields that may be `null` in a PATCH (it clears them); for every other
/// field of a PATCH `null` would change nothing, which is refused.
const CLEARABLE: &[&str] = &["domain", "email"];

/// The schema rules of a request field, by name.
fn field_rules(schema: &str, field: &str) -> Option<Value> {
    Some(match field {
        "id" => json!({"pattern": SLUG, "maxLength": 63}),
        "display_name" if schema.ends_with("Key") => {
            json!({"minLength": 1, "maxLength": 100, "pattern": NAME})
        }
        "display_name" => json!({"minLength": 1, "maxLength": 200, "pattern": NAME}),
        "domain" => json!({"pattern": DNS_NAME, "maxLength": 253}),
        "email" => json!({"pattern": EMAIL, "maxLength": 254}),
        "settings" | "labels" => json!({
            "maxProperties": 64,
            "propertyNames": {"pattern": MAP_KEY},
            "additionalProperties": {"type": "string", "maxLength": 1024, "pattern": NO_CONTROL},
        }),
        "enabled_integrations" => {
            json!({"maxItems": 256, "items": {"type": "string", "pattern": SLUG}})
        }
        "version" => json!({"minimum": 1}),
        "requests_per_minute" | "max_connections" => json!({"minimum": 0, "maximum": MAX_QUOTA}),
        "roles" => json!({"minItems": 1}),
        // `locksmith_domain::secrets::catalogue`: MAX_FIELDS, MAX_FIELD_NAME,
        // MAX_FIELD_VALUE (bytes; the schema counts characters).
        "fields" if schema == "PutSecret" => json!({
            "minProperties": 1,
            "maxProperties": 64,
            "propertyNames": {"pattern": SECRET_FIELD},
            "additionalProperties": {"type": "string", "maxLength": 16384, "pattern": NO_CONTROL},
        }),
        "expected_version" => json!({"minimum": 0}),
        _ => return None,
    })
}

/// Merges `rules` into the non-null branch of a property schema.
fn constrain(property: &mut Value, rules: &Value) {
    let target = match property.get_mut("oneOf").and_then(Value::as_array_mut) {
        // `Option<T>` of a non-primitive: `oneOf: [{type: null}, {...}]`.
        Some(branches) => branches
            .iter_mut()
            .find(|b| b.get("type") != Some(&json!("null"))),
        None => Some(property),
    };
    if let (Some(Value::Object(target)), Value::Object(rules)) = (target, rules) {
        for (k, v) in rules {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Removes `null` from a property's accepted values.
fn not_null(property: &mut Value) {
    if let Some(types) = property.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            property["type"] = only;
        }
    }
    if let Some(branches) = property.get_mut("oneOf").and_then(Value::as_array_mut) {
        branches.retain(|b| b.get("type") != Some(&json!("null")));
        if branches.len() == 1 {
            let only = branches.remove(0);
            *property = only;
        }
    }
}

/// What a PUT of a secret says about seed 000's catalogue, generated from
/// it: a known name takes only its own fields, each of its type. JSON Schema
/// cannot tie a body's rules to a path parameter's value, so the rule is
/// stated here in words (and the contract run allows a 400 on these PUTs).
fn catalogue_description() -> String {
    use locksmith_domain::secrets::catalogue::{CATALOGUE, FieldType, Level};
    let mut out = String::from(
        "A secret's new version. Known names (seed 000's catalogue) take only their own \
         fields, each of its type; any other name is a free map of text fields. Known names:",
    );
    for entry in CATALOGUE {
        let level = match entry.level {
            Level::System => "system",
            Level::Tenant => "tenant",
            Level::Org => "org",
            Level::Bot => "bot",
            Level::User => "user",
        };
        let fields: Vec<String> = entry
            .fields
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    FieldType::Text => "text",
                    FieldType::Port => "port",
                    FieldType::Url => "URL",
                    FieldType::Host => "host",
                    FieldType::Email => "email",
                    FieldType::Bool => "true/false",
                    FieldType::PathList => "paths",
                };
                format!(
                    "`{}` ({kind}{})",
                    f.name,
                    if f.secret { ", secret" } else { "" }
                )
            })
            .collect();
        out.push_str(&format!(
            "\n- {level} `{}`: {}",
            entry.name,
            fields.join(", ")
        ));
    }
    out
}

/// Applies the request-body rules and the parameter rules to `doc`.
pub fn apply(doc: &mut Value) {
    if let Some(put) = doc.pointer_mut("/components/schemas/PutSecret") {
        put["description"] = json!(catalogue_description());
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if !REQUEST_BODIES.contains(&name.as_str()) {
                continue;
            }
            let patch = name.starts_with("Patch");
            if patch {
                // The version and at least one change.
                schema["minProperties"] = json!(2);
            }
            let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (field, property) in properties.iter_mut() {
                if patch && !CLEARABLE.contains(&field.as_str()) {
                    not_null(property);
                }
                if let Some(rules) = field_rules(name, field) {
                    constrain(property, &rules);
                }
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for param in params {
                    let rules = match param["name"].as_str() {
                        Some("key_id") => json!({"pattern": KEY_ID}),
                        Some(n) if n.ends_with("_id") => json!({"pattern": SLUG, "maxLength": 63}),
                        // A catalog entry's id is a slug like every other id.
                        Some("integration") => json!({"pattern": SLUG, "maxLength": 63}),
                        Some("page_size") => json!({"minimum": 1, "maximum": 1000}),
                        Some("page_token") => json!({"maxLength": 512}),
                        Some("version") => {
                            json!({"minimum": 1, "maximum": crate::dto::MAX_VERSION})
                        }
                        Some("name") => json!({"pattern": SECRET_NAME_SEGMENT, "maxLength": 63}),
                        _ => continue,
                    };
                    constrain(&mut param["schema"], &rules);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_lose_null_except_where_null_clears() {
        let mut doc = json!({"components": {"schemas": {"PatchUser": {"properties": {
            "display_name": {"type": ["string", "null"]},
            "email": {"type": ["string", "null"]},
            "labels": {"oneOf": [{"type": "null"}, {"type": "object"}]},
            "version": {"type": "integer"}
        }}}}});
        apply(&mut doc);
        let p = &doc["components"]["schemas"]["PatchUser"];
        assert_eq!(p["minProperties"], 2);
        assert_eq!(p["properties"]["display_name"]["type"], "string");
        assert_eq!(p["properties"]["display_name"]["maxLength"], 200);
        assert_eq!(p["properties"]["email"]["type"], json!(["string", "null"]));
        assert_eq!(p["properties"]["labels"]["type"], "object");
        assert_eq!(p["properties"]["labels"]["maxProperties"], 64);
        assert_eq!(p["properties"]["version"]["minimum"], 1);
    }

    #[test]
    fn path_ids_and_paging_are_bounded() {
        let mut doc = json!({"paths": {"/tenants/{tenant_id}/api-keys/{key_id}": {"delete": {"parameters": [
            {"name": "tenant_id", "in": "path", "schema": {"type": "string"}},
            {"name": "key_id", "in": "path", "schema": {"type": "string"}},
            {"name": "page_size", "in": "query", "schema": {"type": ["integer", "null"]}}
        ]}}}});
        apply(&mut doc);
        let params =
            &doc["paths"]["/tenants/{tenant_id}/api-keys/{key_id}"]["delete"]["parameters"];
        assert_eq!(params[0]["schema"]["pattern"], SLUG);
        assert_eq!(params[1]["schema"]["pattern"], KEY_ID);
        assert_eq!(params[2]["schema"]["maximum"], 1000);
    }
}
