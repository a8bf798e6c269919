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
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// Authenticate as a `--no-password` user: etcd's auth store error, which its gRPC layer
    /// does not map, so it reaches the client with code Unknown and the store's own text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
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
            | InvalidSortOption | RequestTooLarge | MemberBadUrls | UserEmpty | RoleEmpty
            | AuthFailed | PermissionNotGiven | InvalidAuthMgmt | AuthOldRevision => {
                Code::InvalidArgument
            }
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist | NotLeader | BadLeaderTransferee | MemberExist | PeerUrlExist
            | MemberNotLearner | LearnerNotReady | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled | RootUserNotExist | RootRoleNotExist => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoLeader | LeaderChanged | Stopped | Timeout | LeaderTransferTimeout => {
                Code::Unavailable
            }
            Corrupt => Code::DataLoss,
            ElectionNotLeader | ElectionNoLeader | MissingLeaderKey | SessionExpired
            | NoPasswordUser => Code::Unknown,
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
            UserEmpty => 44,
            UserAlreadyExist => 45,
            UserNotFound => 46,
            RoleAlreadyExist => 47,
            RoleNotFound => 48,
            RoleEmpty => 49,
            AuthFailed => 50,
            PermissionDenied => 51,
            RoleNotGranted => 52,
            PermissionNotGranted => 53,
            PermissionNotGiven => 54,
            AuthNotEnabled => 55,
            InvalidAuthToken => 56,
            InvalidAuthMgmt => 57,
            AuthOldRevision => 58,
            RootUserNotExist => 59,
            RootRoleNotExist => 60,
            NoPasswordUser => 61,
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
            44 => UserEmpty,
            45 => UserAlreadyExist,
            46 => UserNotFound,
            47 => RoleAlreadyExist,
            48 => RoleNotFound,
            49 => RoleEmpty,
            50 => AuthFailed,
            51 => PermissionDenied,
            52 => RoleNotGranted,
            53 => PermissionNotGranted,
            54 => PermissionNotGiven,
            55 => AuthNotEnabled,
            56 => InvalidAuthToken,
            57 => InvalidAuthMgmt,
            58 => AuthOldRevision,
            59 => RootUserNotExist,
            60 => RootRoleNotExist,
            61 => NoPasswordUser,
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
    fn auth_errors_carry_etcds_codes() {
        let cases = [
            (EtcdError::UserEmpty, Code::InvalidArgument),
            (EtcdError::AuthFailed, Code::InvalidArgument),
            (EtcdError::AuthOldRevision, Code::InvalidArgument),
            (EtcdError::InvalidAuthMgmt, Code::InvalidArgument),
            (EtcdError::UserNotFound, Code::FailedPrecondition),
            (EtcdError::RootUserNotExist, Code::FailedPrecondition),
            (EtcdError::AuthNotEnabled, Code::FailedPrecondition),
            (EtcdError::PermissionDenied, Code::PermissionDenied),
            (EtcdError::InvalidAuthToken, Code::Unauthenticated),
            (EtcdError::NoPasswordUser, Code::Unknown),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e.clone()).code(), code, "{e}");
        }
        assert_eq!(
            EtcdError::InvalidAuthToken.to_string(),
            "etcdserver: invalid auth token"
        );
    }

    #[test]
    fn tags_round_trip() {
        for tag in (1..=28u8).chain(40..=61) {
            assert_eq!(EtcdError::from_tag(tag, String::new()).tag(), tag);
        }
        assert_eq!(
            EtcdError::from_tag(255, "disk".into()),
            EtcdError::Internal("disk".into())
        );
    }
}
