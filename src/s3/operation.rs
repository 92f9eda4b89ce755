//! The S3 operation names, exactly as AWS spells them in its API reference and SDKs, so a
//! scenario can say `operation: GetObject` and mean what an SRE reading a CloudTrail log
//! means.

use std::fmt;
use std::str::FromStr;

macro_rules! operations {
    ($($name:ident),+ $(,)?) => {
        /// One S3 API operation. `Unknown` is a real value: such requests are proxied and
        /// can still be matched by method, bucket, key or header.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Operation { $($name),+ }

        impl Operation {
            /// Every operation, in declaration order (the order of their bit in [`OperationSet`]).
            pub const ALL: &'static [Operation] = &[$(Operation::$name),+];

            /// The AWS name, e.g. `"GetObject"`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Operation::$name => stringify!($name)),+ }
            }
        }
    };
}

operations! {
    AbortMultipartUpload, CompleteMultipartUpload, CopyObject, CreateBucket,
    CreateMultipartUpload, DeleteBucket, DeleteBucketAnalyticsConfiguration, DeleteBucketCors,
    DeleteBucketEncryption, DeleteBucketIntelligentTieringConfiguration,
    DeleteBucketInventoryConfiguration, DeleteBucketLifecycle, DeleteBucketMetricsConfiguration,
    DeleteBucketOwnershipControls, DeleteBucketPolicy, DeleteBucketReplication,
    DeleteBucketTagging, DeleteBucketWebsite, DeleteObject, DeleteObjectTagging, DeleteObjects,
    DeletePublicAccessBlock, GetBucketAccelerateConfiguration, GetBucketAcl,
    GetBucketAnalyticsConfiguration, GetBucketCors, GetBucketEncryption,
    GetBucketIntelligentTieringConfiguration, GetBucketInventoryConfiguration,
    GetBucketLifecycleConfiguration, GetBucketLocation, GetBucketLogging,
    GetBucketMetricsConfiguration, GetBucketNotificationConfiguration,
    GetBucketOwnershipControls, GetBucketPolicy, GetBucketPolicyStatus, GetBucketReplication,
    GetBucketRequestPayment, GetBucketTagging, GetBucketVersioning, GetBucketWebsite, GetObject,
    GetObjectAcl, GetObjectAttributes, GetObjectLegalHold, GetObjectLockConfiguration,
    GetObjectRetention, GetObjectTagging, GetObjectTorrent, GetPublicAccessBlock, HeadBucket,
    HeadObject, ListBucketAnalyticsConfigurations, ListBucketIntelligentTieringConfigurations,
    ListBucketInventoryConfigurations, ListBucketMetricsConfigurations, ListBuckets,
    ListMultipartUploads, ListObjectVersions, ListObjects, ListObjectsV2, ListParts, PostObject,
    PutBucketAccelerateConfiguration, PutBucketAcl, PutBucketAnalyticsConfiguration,
    PutBucketCors, PutBucketEncryption, PutBucketIntelligentTieringConfiguration,
    PutBucketInventoryConfiguration, PutBucketLifecycleConfiguration, PutBucketLogging,
    PutBucketMetricsConfiguration, PutBucketNotificationConfiguration,
    PutBucketOwnershipControls, PutBucketPolicy, PutBucketReplication, PutBucketRequestPayment,
    PutBucketTagging, PutBucketVersioning, PutBucketWebsite, PutObject, PutObjectAcl,
    PutObjectLegalHold, PutObjectLockConfiguration, PutObjectRetention, PutObjectTagging,
    PutPublicAccessBlock, RestoreObject, SelectObjectContent, UploadPart, UploadPartCopy,
    Unknown,
}

impl Operation {
    /// Whether the operation changes what the store holds (a write, a delete, a multipart
    /// step): the calls whose failure can be ambiguous (done, yet reported failed).
    pub fn changes_state(self) -> bool {
        const WRITES: [&str; 9] = [
            "Put",
            "Delete",
            "Create",
            "Complete",
            "Copy",
            "Upload",
            "Abort",
            "Restore",
            "PostObject",
        ];
        let name = self.as_str();
        WRITES.iter().any(|w| name.starts_with(w))
    }
}

// The set type below stores one bit per operation in a u128.
const _: () = assert!(Operation::ALL.len() <= 128);

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name in a scenario file that is not an S3 operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown S3 operation `{0}` (operation names are spelled as in the S3 API reference, e.g. GetObject, PutObject, ListObjectsV2)"
)]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

/// A set of operations as a bitmask: membership is one AND, whatever the set's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationSet(u128);

impl OperationSet {
    pub fn insert(&mut self, op: Operation) {
        self.0 |= 1u128 << (op as u8);
    }

    pub fn contains(self, op: Operation) -> bool {
        self.0 & (1u128 << (op as u8)) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Operation> {
        Operation::ALL.iter().copied().filter(move |op| self.contains(*op))
    }
}

impl FromIterator<Operation> for OperationSet {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        let mut set = OperationSet::default();
        for op in iter {
            set.insert(op);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), *op);
        }
        assert!("GetObjects".parse::<Operation>().is_err());
        assert!("getobject".parse::<Operation>().is_err());
    }

    #[test]
    fn writes_change_state_and_reads_do_not() {
        for op in [
            Operation::PutObject,
            Operation::UploadPart,
            Operation::CompleteMultipartUpload,
            Operation::DeleteObjects,
            Operation::AbortMultipartUpload,
        ] {
            assert!(op.changes_state(), "{op}");
        }
        for op in [
            Operation::GetObject,
            Operation::HeadObject,
            Operation::ListObjectsV2,
            Operation::ListParts,
            Operation::Unknown,
        ] {
            assert!(!op.changes_state(), "{op}");
        }
    }

    #[test]
    fn set_membership() {
        let set: OperationSet = [Operation::GetObject, Operation::Unknown].into_iter().collect();
        assert!(set.contains(Operation::GetObject));
        assert!(set.contains(Operation::Unknown));
        assert!(!set.contains(Operation::PutObject));
        assert_eq!(set.iter().count(), 2);
    }
}
