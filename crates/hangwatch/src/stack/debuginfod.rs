//! Debug files by build id from debuginfod servers, the service elfutils
//! wrote and Fedora, Debian, Ubuntu and Arch run for their packages.
//!
//! The servers are the ones `DEBUGINFOD_URLS` lists (space-separated, in
//! order of preference), as for gdb and elfutils; none when it is unset or
//! empty. A file is fetched with `GET URL/buildid/BUILD-ID/debuginfo` into
//! the cache elfutils' own client uses (`DEBUGINFOD_CACHE_PATH`, else
//! `~/.cache/debuginfod_client`), so a file that gdb already fetched is not
//! fetched again, and each build id is asked for at most once per
//! [`Debuginfod`]: a server that has no file for it is not asked again.
//!
//! The fetch blocks its thread (a stack worker, the hub's symbolizer, a
//! command), never the monitor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use debuginfod::{BuildId, CachingClient, Client};

/// How long one fetch may take, a large file from a distant server
/// included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for the servers of `DEBUGINFOD_URLS`, with what it was told.
pub(crate) struct Debuginfod {
    client: Result<CachingClient, String>,
    answers: HashMap<String, Result<PathBuf, String>>,
}

impl Debuginfod {
    /// The client `DEBUGINFOD_URLS` asks for, or why there is none.
    pub(crate) fn from_env() -> Debuginfod {
        // No HTTP client (and its threads) unless there is a server to ask.
        if std::env::var_os("DEBUGINFOD_URLS").is_none_or(|urls| urls.is_empty()) {
            return Debuginfod::without("DEBUGINFOD_URLS is not set".into());
        }
        let http = debuginfod::reqwest::blocking::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build();
        let http = match http {
            Ok(http) => http,
            Err(error) => return Debuginfod::without(format!("no HTTP client: {error}")),
        };
        let client = match Client::builder().http_client(http).build_from_env() {
            Ok(Some(client)) => CachingClient::from_env(client)
                .map_err(|error| format!("its cache cannot be used: {error:#}")),
            Ok(None) => Err("DEBUGINFOD_URLS is not set".into()),
            Err(error) => Err(format!("DEBUGINFOD_URLS is not valid: {error:#}")),
        };
        Debuginfod {
            client,
            answers: HashMap::new(),
        }
    }

    fn without(why: String) -> Debuginfod {
        Debuginfod {
            client: Err(why),
            answers: HashMap::new(),
        }
    }

    /// The debug file of `build_id` (lower-case hex), fetched if it is not
    /// in the cache yet; or what the servers said.
    pub(crate) fn debug_file(&mut self, build_id: &str) -> Result<PathBuf, String> {
        if let Some(answer) = self.answers.get(build_id) {
            return answer.clone();
        }
        let answer = match &self.client {
            Ok(client) => match client.fetch_debug_info(&BuildId::formatted(build_id)) {
                Ok(Some(path)) => Ok(path),
                Ok(None) => Err("no server has it".into()),
                Err(error) => Err(format!("the fetch failed: {error:#}")),
            },
            Err(why) => Err(why.clone()),
        };
        self.answers.insert(build_id.to_owned(), answer.clone());
        answer
    }
}
