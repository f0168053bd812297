//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902). A strategic merge
//! patch is applied as a merge patch: lists are replaced, not merged by key (enough for the
//! annotation and status patches the agent sends; say so in a test that relies on more).

use serde_json::Value;

use super::ApiError;

pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!()
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch is an array of operations"))?;
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request("JSON patch operation without a path"))?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(target, path, op["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(ApiError::unprocessable(&format!(
                        "JSON patch test failed at {path}"
                    )));
                }
            }
            "move" | "copy" => {
                let from = op["from"]
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("move/copy without from"))?;
                let value = if op["op"] == "move" {
                    remove(target, from)?
                } else {
                    target.pointer(from).cloned().ok_or_else(|| missing(from))?
                };
                add(target, path, value)?;
            }
            other => {
                return Err(ApiError::bad_request(&format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), ApiError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad_request(&format!("bad JSON pointer {path:?}")))?;
    Ok((
        parent.to_owned(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn missing(path: &str) -> ApiError {
    ApiError::unprocessable(&format!("JSON patch: nothing at {path}"))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let (parent, key) = split(path)?;
    match target
        .pointer_mut(&parent)
        .ok_or_else(|| missing(&parent))?
    {
        Value::Object(map) => {
            map.insert(key, value);
        }
        Value::Array(list) if key == "-" => list.push(value),
        Value::Array(list) => {
            let i: usize = key.parse().map_err(|_| missing(path))?;
            if i > list.len() {
                return Err(missing(path));
            }
            list.insert(i, value);
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, key) = split(path)?;
    match target
        .pointer_mut(&parent)
        .ok_or_else(|| missing(&parent))?
    {
        Value::Object(map) => map.remove(&key).ok_or_else(|| missing(path)),
        Value::Array(list) => {
            let i: usize = key.parse().map_err(|_| missing(path))?;
            (i < list.len())
                .then(|| list.remove(i))
                .ok_or_else(|| missing(path))
        }
        _ => Err(missing(path)),
    }
}
