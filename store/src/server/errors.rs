//! The one table that maps errors to etcd's gRPC status codes and message strings.
//!
//! Clients match on these exact strings (clientv3 turns them back into typed errors), so the
//! text and code of every variant are etcd's (`api/v3rpc/rpctypes`). Nothing else in the
//! server builds a `tonic::Status` from an error by hand.

use tonic::{Code, Status};

/// An error a client sees, with etcd's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// The concurrency recipes' own errors (`clientv3/concurrency`, `v3election`): plain Go
    /// errors in etcd, so they reach the client with code Unknown.
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("mutex: session is expired")]
    SessionExpired,
    /// An internal failure (storage I/O and the like); the text names the cause.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd sends with this error.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge | MemberBadUrls => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist | NotLeader | BadLeaderTransferee | MemberExist | PeerUrlExist
            | MemberNotLearner | LearnerNotReady => Code::FailedPrecondition,
            NoLeader | LeaderChanged | Stopped | Timeout | LeaderTransferTimeout => {
                Code::Unavailable
            }
            Corrupt => Code::DataLoss,
            ElectionNotLeader | ElectionNoLeader | MissingLeaderKey | SessionExpired => {
                Code::Unknown
            }
            Internal(_) => Code::Internal,
        }
    }

    /// A compact tag for carrying the error between members (forwarded requests).
    pub fn tag(&self) -> u8 {
        use EtcdError::*;
        match self {
            EmptyKey => 1,
            KeyNotFound => 2,
            ValueProvided => 3,
            LeaseProvided => 4,
            TooManyOps => 5,
            DuplicateKey => 6,
            InvalidSortOption => 7,
            Compacted => 8,
            FutureRev => 9,
            NoSpace => 10,
            LeaseNotFound => 11,
            LeaseExist => 12,
            LeaseTtlTooLarge => 13,
            RequestTooLarge => 14,
            NoLeader => 15,
            NotLeader => 16,
            LeaderChanged => 17,
            Stopped => 18,
            Timeout => 19,
            MemberNotFound => 20,
            Corrupt => 21,
            BadLeaderTransferee => 22,
            LeaderTransferTimeout => 23,
            MemberExist => 24,
            PeerUrlExist => 25,
            MemberBadUrls => 26,
            MemberNotLearner => 27,
            LearnerNotReady => 28,
            ElectionNotLeader => 40,
            ElectionNoLeader => 41,
            MissingLeaderKey => 42,
            SessionExpired => 43,
            Internal(_) => 255,
        }
    }

    /// Inverse of [`EtcdError::tag`]; `detail` is the text of an `Internal` error.
    pub fn from_tag(tag: u8, detail: String) -> Self {
        use EtcdError::*;
        match tag {
            1 => EmptyKey,
            2 => KeyNotFound,
            3 => ValueProvided,
            4 => LeaseProvided,
            5 => TooManyOps,
            6 => DuplicateKey,
            7 => InvalidSortOption,
            8 => Compacted,
            9 => FutureRev,
            10 => NoSpace,
            11 => LeaseNotFound,
            12 => LeaseExist,
            13 => LeaseTtlTooLarge,
            14 => RequestTooLarge,
            15 => NoLeader,
            16 => NotLeader,
            17 => LeaderChanged,
            18 => Stopped,
            19 => Timeout,
            20 => MemberNotFound,
            21 => Corrupt,
            22 => BadLeaderTransferee,
            23 => LeaderTransferTimeout,
            24 => MemberExist,
            25 => PeerUrlExist,
            26 => MemberBadUrls,
            27 => MemberNotLearner,
            28 => LearnerNotReady,
            40 => ElectionNotLeader,
            41 => ElectionNoLeader,
            42 => MissingLeaderKey,
            43 => SessionExpired,
            _ => Internal(detail),
        }
    }
}

/// etcd's Election and Lock servers run their recipes through an in-process clientv3, which
/// turns every etcd error it gets back into a plain Go error (`rpctypes.EtcdError`); gRPC then
/// sends it with code Unknown and the same message. This is that conversion, for errors of the
/// KV calls made by the recipes. Statuses that are not etcd errors keep their code.
pub fn through_v3client(s: Status) -> Status {
    let known = (1..=u8::MAX)
        .map(|tag| EtcdError::from_tag(tag, String::new()))
        .any(|e| !matches!(e, EtcdError::Internal(_)) && e.to_string() == s.message());
    if known {
        Status::new(Code::Unknown, s.message())
    } else {
        s
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<cairn_mvcc::MvccError> for EtcdError {
    fn from(e: cairn_mvcc::MvccError) -> Self {
        use cairn_mvcc::MvccError as M;
        match e {
            M::Compacted => EtcdError::Compacted,
            M::FutureRevision => EtcdError::FutureRev,
            M::LeaseNotFound => EtcdError::LeaseNotFound,
            M::LeaseExists => EtcdError::LeaseExist,
            M::KeyNotFound => EtcdError::KeyNotFound,
            other => EtcdError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_strings_are_etcds() {
        let s = Status::from(EtcdError::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = Status::from(EtcdError::LeaseNotFound);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s = Status::from(EtcdError::DuplicateKey);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "etcdserver: duplicate key given in txn request"
        );
    }

    #[test]
    fn tags_round_trip() {
        for tag in (1..=28u8).chain(40..=43) {
            assert_eq!(EtcdError::from_tag(tag, String::new()).tag(), tag);
        }
        assert_eq!(
            EtcdError::from_tag(255, "disk".into()),
            EtcdError::Internal("disk".into())
        );
    }
}
