//! The committed JSON Schemas under `models/schemas/` must match the types.
//! Regenerate them with `UPDATE_SCHEMAS=1 cargo test -p onex-vault-models`.

use std::path::PathBuf;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn committed_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut drifted = Vec::new();
    for message in onex_vault_models::schemas() {
        let path = schema_dir().join(message.file_name());
        let generated = serde_json::to_string_pretty(&message.schema).expect("schema serializes") + "\n";
        if update {
            std::fs::write(&path, &generated).expect("write schema file");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            drifted.push(path.display().to_string());
        }
    }
    assert!(
        drifted.is_empty(),
        "JSON Schemas drifted from the types: {drifted:?}\nrun `UPDATE_SCHEMAS=1 cargo test -p onex-vault-models` and commit the result"
    );
}

#[test]
fn no_stray_schema_files() {
    let expected: Vec<String> = onex_vault_models::schemas().iter().map(|m| m.file_name()).collect();
    for entry in std::fs::read_dir(schema_dir()).expect("schemas dir exists") {
        let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        assert!(expected.contains(&name), "{name} is not generated from any type");
    }
}

/// `Operation` is derived from `VaultRequest`'s variants and named by strum;
/// the wire tags are named by serde. Both must give every operation the same
/// name, in the same order: the request schema's `operation` constants are
/// serde's names.
#[test]
fn every_operation_is_in_the_request_schema_under_its_name() {
    let request = onex_vault_models::schemas()
        .into_iter()
        .find(|message| message.name == "vault-request")
        .expect("the request schema");
    let variants = request.schema["$defs"]["VaultRequest"]["oneOf"].as_array().expect("VaultRequest is a oneOf");
    let tags: Vec<&str> =
        variants.iter().map(|variant| variant["properties"]["operation"]["const"].as_str().expect("a tag")).collect();
    let names: Vec<&str> = onex_vault_models::Operation::all().map(onex_vault_models::Operation::as_str).collect();
    assert_eq!(tags, names);
    for name in names {
        assert_eq!(onex_vault_models::Operation::from_name(name).map(|op| op.as_str()), Some(name));
    }
}
