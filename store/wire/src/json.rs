//! JSON <-> protobuf exactly as etcd's gateway (grpc-gateway with `JSONPb{OrigName: true}`)
//! writes and reads it: the .proto field names (`prev_kv`, `cluster_id`, `TTL`, `peerURLs`),
//! 64-bit integers as strings, bytes as base64, enums by name, fields at their default value
//! left out, a present sub-message kept even when empty (`"header":{}`). Input accepts the
//! proto names and the lowerCamelCase JSON names, numbers or strings for 64-bit integers, enum
//! names or numbers, and ignores unknown fields, as grpc-gateway does.
//!
//! Messages are described by the API's own descriptor set, so every request and response type
//! is covered without a hand-written mapping that could drift from the .proto files.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

/// The descriptors of every message and service of the API.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(cairn_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set generated at build time decodes")
    })
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .skip_default_fields(true)
}

/// A JSON request body as the protobuf encoding of `desc`. An empty body is the empty
/// message, as grpc-gateway treats it.
pub fn request_from_json(desc: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    request_from_value(desc, value)
}

/// One already-parsed JSON value as the protobuf encoding of `desc`.
pub fn request_from_value(
    desc: &MessageDescriptor,
    value: serde_json::Value,
) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::deserialize_with_options(
        desc.clone(),
        value,
        &DeserializeOptions::new().deny_unknown_fields(false),
    )
    .map_err(|e| e.to_string())?;
    Ok(msg.encode_to_vec())
}

/// The protobuf encoding of a `desc` message as etcd's gateway writes it.
pub fn response_to_json(desc: &MessageDescriptor, pb: &[u8]) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::decode(desc.clone(), pb).map_err(|e| e.to_string())?;
    let mut ser = serde_json::Serializer::new(Vec::with_capacity(pb.len() * 2 + 16));
    msg.serialize_with_options(&mut ser, &serialize_options())
        .map_err(|e| e.to_string())?;
    Ok(ser.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::{
        Member, MemberListResponse, PutRequest, RangeResponse, ResponseHeader,
    };
    use cairn_proto::mvccpb::KeyValue;

    fn desc(name: &str) -> MessageDescriptor {
        pool().get_message_by_name(name).expect(name)
    }

    #[test]
    fn requests_take_proto_and_camel_names_and_base64() {
        let d = desc("etcdserverpb.PutRequest");
        let pb = request_from_json(
            &d,
            br#"{"key":"Zm9v","value":"YmFy","prevKv":true,"lease":"7","x":1}"#,
        )
        .expect("decode");
        let put = PutRequest::decode(pb.as_slice()).expect("pb");
        assert_eq!(put.key, b"foo");
        assert_eq!(put.value, b"bar");
        assert!(put.prev_kv);
        assert_eq!(put.lease, 7);
        let pb = request_from_json(&d, br#"{"key":"Zm9v","prev_kv":true,"lease":8}"#).unwrap();
        let put = PutRequest::decode(pb.as_slice()).expect("pb");
        assert!(put.prev_kv);
        assert_eq!(put.lease, 8);
        assert!(request_from_json(&d, b"  ").unwrap().is_empty());
        assert!(request_from_json(&d, br#"{"key":"not base64!"}"#).is_err());
    }

    /// The shapes etcd 3.4's gateway emits (captured from a real etcd).
    #[test]
    fn responses_look_like_etcds() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 5,
                raft_term: 0,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 5,
                version: 4,
                value: b"baz".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = response_to_json(&desc("etcdserverpb.RangeResponse"), &resp.encode_to_vec())
            .expect("encode");
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"5"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"5","version":"4","value":"YmF6"}],"count":"1"}"#
        );
        let members = MemberListResponse {
            header: Some(ResponseHeader::default()),
            members: vec![Member {
                id: 9,
                name: "a".into(),
                peer_ur_ls: vec!["http://p".into()],
                client_ur_ls: vec![],
                is_learner: false,
            }],
        };
        let json = response_to_json(
            &desc("etcdserverpb.MemberListResponse"),
            &members.encode_to_vec(),
        )
        .expect("encode");
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"header":{},"members":[{"ID":"9","name":"a","peerURLs":["http://p"]}]}"#
        );
    }
}
