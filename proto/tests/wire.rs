//! Guards the wire format: etcd clients only interoperate if our field
//! numbers, wire types and oneof layouts are exactly etcd's. Each expected
//! byte string is a hand-computed protobuf encoding (tag = field << 3 | wire
//! type), so a renumbered field in a `.proto` file fails here.

use cairn_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, watch_create_request, watch_request, Compare,
    DeleteRangeRequest, LeaseGrantRequest, Member, PutRequest, PutResponse, RangeRequest,
    RequestOp, ResponseHeader, ResponseOp, StatusResponse, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::{event, Event, KeyValue};
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decodes what it encoded");
    assert_eq!(&back, msg);
}

#[test]
fn put_request_round_trips() {
    let put = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 7,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    round_trip(&put);

    let resp = PutResponse {
        header: Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        }),
        prev_kv: Some(KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"old".to_vec(),
            lease: 0,
        }),
    };
    round_trip(&resp);
}

#[test]
fn txn_with_nested_ops_round_trips() {
    let inner = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: b"k2".to_vec(),
            target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"k2".to_vec(),
                    range_end: Vec::new(),
                    prev_kv: true,
                },
            )),
        }],
        failure: Vec::new(),
    };
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"k1".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(10)),
            range_end: b"k9".to_vec(),
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"k1".to_vec(),
                    value: b"v1".to_vec(),
                    ..Default::default()
                })),
            },
            RequestOp {
                request: Some(request_op::Request::RequestTxn(inner)),
            },
        ],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"k1".to_vec(),
                sort_order: range_request::SortOrder::Descend as i32,
                sort_target: range_request::SortTarget::Create as i32,
                ..Default::default()
            })),
        }],
    };
    round_trip(&txn);

    let resp = TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded: true,
        responses: vec![ResponseOp {
            response: Some(response_op::Response::ResponseTxn(TxnResponse {
                succeeded: false,
                ..Default::default()
            })),
        }],
    };
    round_trip(&resp);
}

#[test]
fn kv_field_numbers_match_etcd() {
    // RangeRequest.limit = 3 (varint), keys_only = 8, count_only = 9,
    // max_create_revision = 13.
    let limit = RangeRequest {
        limit: 5,
        ..Default::default()
    };
    assert_eq!(limit.encode_to_vec(), [0x18, 0x05]);
    let keys_only = RangeRequest {
        keys_only: true,
        ..Default::default()
    };
    assert_eq!(keys_only.encode_to_vec(), [0x40, 0x01]);
    let count_only = RangeRequest {
        count_only: true,
        ..Default::default()
    };
    assert_eq!(count_only.encode_to_vec(), [0x48, 0x01]);
    let max_create = RangeRequest {
        max_create_revision: 1,
        ..Default::default()
    };
    assert_eq!(max_create.encode_to_vec(), [0x68, 0x01]);

    // PutRequest.prev_kv = 4.
    let put = PutRequest {
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(put.encode_to_vec(), [0x20, 0x01]);

    // Compare: mod_revision is oneof member 6; range_end jumps to 64, whose
    // tag (64 << 3 | 2 = 514) takes two varint bytes.
    let cmp = Compare {
        target_union: Some(compare::TargetUnion::ModRevision(2)),
        range_end: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(cmp.encode_to_vec(), [0x30, 0x02, 0x82, 0x04, 0x01, b'z']);

    // RequestOp.request_txn = 4 (length-delimited, here empty).
    let op = RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest::default())),
    };
    assert_eq!(op.encode_to_vec(), [0x22, 0x00]);

    // KeyValue.lease = 6; Event.prev_kv = 3; EventType DELETE = 1.
    let kv = KeyValue {
        lease: 9,
        ..Default::default()
    };
    assert_eq!(kv.encode_to_vec(), [0x30, 0x09]);
    let ev = Event {
        r#type: event::EventType::Delete as i32,
        kv: None,
        prev_kv: Some(KeyValue::default()),
    };
    assert_eq!(ev.encode_to_vec(), [0x08, 0x01, 0x1a, 0x00]);
}

#[test]
fn watch_field_numbers_match_etcd() {
    // WatchCreateRequest.prev_kv = 6, watch_id = 7, fragment = 8,
    // filters = 5 (packed repeated enum).
    let create = WatchCreateRequest {
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(create.encode_to_vec(), [0x30, 0x01]);
    let ids = WatchCreateRequest {
        watch_id: 3,
        fragment: true,
        filters: vec![watch_create_request::FilterType::Nodelete as i32],
        ..Default::default()
    };
    assert_eq!(
        ids.encode_to_vec(),
        [0x2a, 0x01, 0x01, 0x38, 0x03, 0x40, 0x01]
    );

    // WatchRequest: create_request = 1, progress_request = 3.
    let req = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"a".to_vec(),
                ..Default::default()
            },
        )),
    };
    assert_eq!(req.encode_to_vec(), [0x0a, 0x03, 0x0a, 0x01, b'a']);
    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            Default::default(),
        )),
    };
    assert_eq!(progress.encode_to_vec(), [0x1a, 0x00]);

    // WatchResponse.events jumps to 11.
    let resp = WatchResponse {
        events: vec![Event::default()],
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec(), [0x5a, 0x00]);
}

#[test]
fn lease_cluster_maintenance_field_numbers_match_etcd() {
    // LeaseGrantRequest: TTL = 1, ID = 2.
    let grant = LeaseGrantRequest { ttl: 10, id: 42 };
    assert_eq!(grant.encode_to_vec(), [0x08, 0x0a, 0x10, 0x2a]);

    // Member.isLearner = 5.
    let member = Member {
        is_learner: true,
        ..Default::default()
    };
    assert_eq!(member.encode_to_vec(), [0x28, 0x01]);

    // StatusResponse: errors = 8, dbSizeInUse = 9, isLearner = 10.
    let status = StatusResponse {
        errors: vec!["x".to_owned()],
        db_size_in_use: 1,
        is_learner: true,
        ..Default::default()
    };
    assert_eq!(
        status.encode_to_vec(),
        [0x42, 0x01, b'x', 0x48, 0x01, 0x50, 0x01]
    );
}

#[test]
fn descriptor_set_is_embedded() {
    assert!(!cairn_proto::FILE_DESCRIPTOR_SET.is_empty());
    let has = |needle: &[u8]| {
        cairn_proto::FILE_DESCRIPTOR_SET
            .windows(needle.len())
            .any(|w| w == needle)
    };
    assert!(has(b"etcdserverpb"));
    assert!(has(b"cairnraftpb"));
}
