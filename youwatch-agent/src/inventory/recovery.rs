//! What the pod watch does after each error, as client-go's reflector decides
//! (`tools/cache/reflector.go`): retry the same request while the server is unreachable (connection
//! refused) or throttling (429); re-list when the server refused to serve our resourceVersion,
//! whether it said so with an HTTP status when the watch started or with an `ERROR` event in the
//! stream (410 Gone, 504 "Too large resource version" after a restore, any other refusal).
//!
//! kube-rs's watcher already re-lists after a 410 *event*, and retries lists and broken streams
//! by itself; it retries a refused watch *start* (any status) and keeps going after an `ERROR`
//! event other than 410 from the same stale version forever. Those two are the cases where the
//! pod source starts a new watcher, which lists first.

use kube::runtime::watcher;
use prometheus_client::encoding::EncodeLabelValue;

/// Why the pod watch failed (metric label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum WatchErrorReason {
    /// A list request failed (other than 410).
    ListFailed,
    /// 410 Gone: the server no longer has our resourceVersion (watch start, stream, or a list's
    /// continue token).
    Expired,
    /// The watch could not connect (connection refused); retried from the same version.
    Unreachable,
    /// 429 Too Many Requests; retried from the same version.
    Throttled,
    /// The server refused the watch otherwise (a status at its start, or an `ERROR` event: 5xx,
    /// 504 "Too large resource version", 403...).
    WatchRefused,
    /// The watch connection broke mid-stream; resumed from the last version seen.
    StreamFailed,
    /// A list or event without a resourceVersion.
    NoResourceVersion,
}

/// Why this node's pods were listed (again) (metric label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RelistReason {
    /// The first list.
    Start,
    /// `inventory.pod_relist_interval_ms`.
    Periodic,
    /// 410 Gone.
    Expired,
    /// The server refused to watch from our version otherwise.
    WatchRefused,
    NoResourceVersion,
}

/// What follows an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The watcher retries by itself: the list, or the watch from the version it has.
    Retry,
    /// The watcher re-lists by itself.
    Relisting(RelistReason),
    /// The pod source must start a new watcher: this one would retry a refused version.
    Relist(RelistReason),
}

pub fn classify(err: &watcher::Error) -> (WatchErrorReason, Recovery) {
    use Recovery::*;
    use WatchErrorReason as Why;
    match err {
        watcher::Error::InitialListFailed(e) if status(e) == Some(410) => (Why::Expired, Retry),
        watcher::Error::InitialListFailed(_) => (Why::ListFailed, Retry),
        watcher::Error::WatchStartFailed(e) => match status(e) {
            Some(410) => (Why::Expired, Relist(RelistReason::Expired)),
            Some(429) => (Why::Throttled, Retry),
            None if connection_refused(e) => (Why::Unreachable, Retry),
            _ => (Why::WatchRefused, Relist(RelistReason::WatchRefused)),
        },
        watcher::Error::WatchError(status) => match status.code {
            410 => (Why::Expired, Relisting(RelistReason::Expired)),
            429 => (Why::Throttled, Retry),
            _ => (Why::WatchRefused, Relist(RelistReason::WatchRefused)),
        },
        watcher::Error::WatchFailed(_) => (Why::StreamFailed, Retry),
        watcher::Error::NoResourceVersion => (
            Why::NoResourceVersion,
            Relisting(RelistReason::NoResourceVersion),
        ),
    }
}

fn status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// client-go's `utilnet.IsConnectionRefused`: anywhere in the error's chain.
fn connection_refused(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            Status::failure("refused", "Refused").with_code(code),
        ))
    }

    #[test]
    fn watch_start_refusals_relist_except_throttling() {
        let start = |code| classify(&watcher::Error::WatchStartFailed(api(code)));
        assert_eq!(
            start(410),
            (
                WatchErrorReason::Expired,
                Recovery::Relist(RelistReason::Expired)
            )
        );
        for code in [500, 503, 504, 403] {
            assert_eq!(
                start(code),
                (
                    WatchErrorReason::WatchRefused,
                    Recovery::Relist(RelistReason::WatchRefused)
                ),
                "{code}"
            );
        }
        assert_eq!(start(429), (WatchErrorReason::Throttled, Recovery::Retry));
    }

    #[test]
    fn stream_errors_relist_except_throttling() {
        let event = |code| {
            let status = Status::failure("x", "y").with_code(code);
            classify(&watcher::Error::WatchError(Box::new(status)))
        };
        assert_eq!(
            event(410),
            (
                WatchErrorReason::Expired,
                Recovery::Relisting(RelistReason::Expired)
            )
        );
        assert_eq!(
            event(504),
            (
                WatchErrorReason::WatchRefused,
                Recovery::Relist(RelistReason::WatchRefused)
            )
        );
        assert_eq!(event(429).1, Recovery::Retry);
    }

    #[test]
    fn list_failures_are_retried_by_the_watcher() {
        let list = |code| classify(&watcher::Error::InitialListFailed(api(code)));
        assert_eq!(list(500), (WatchErrorReason::ListFailed, Recovery::Retry));
        assert_eq!(list(410), (WatchErrorReason::Expired, Recovery::Retry));
    }

    #[tokio::test]
    async fn connection_refused_is_retried_from_the_same_version() {
        // A loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
        let err = pods
            .watch(&Default::default(), "1")
            .await
            .err()
            .expect("nobody listens");
        assert_eq!(
            classify(&watcher::Error::WatchStartFailed(err)),
            (WatchErrorReason::Unreachable, Recovery::Retry)
        );
    }
}
