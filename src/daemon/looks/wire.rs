//! What protector and its look helper (`helper.rs`) say to each other: one JSON line per
//! batch each way, `{batch, ask, within_ms, paths}` in and `{batch, answers}` out. An answer
//! goes as an array of its fields, not an object of named ones: 100,000 answers are a line
//! of about 7 MB, not 19, and each side spends as much less time writing and reading it.
//! Both sides are the same build (the helper is protector's own executable), so the layout
//! has no version of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::super::effects::Place;
use super::{Answer, Ask};
use crate::schedule::{Fingerprint, Observation};

/// A path as sent: text when it is UTF-8 (every path of a config is), its bytes otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum WirePath {
    Text(String),
    Bytes(Vec<u8>),
}

impl WirePath {
    pub(super) fn of(path: &Path) -> WirePath {
        use std::os::unix::ffi::OsStrExt;
        match path.to_str() {
            Some(text) => WirePath::Text(text.to_string()),
            None => WirePath::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
    }

    pub(super) fn into_path(self) -> PathBuf {
        use std::os::unix::ffi::OsStringExt;
        match self {
            WirePath::Text(text) => PathBuf::from(text),
            WirePath::Bytes(bytes) => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Request {
    pub batch: u64,
    pub ask: Ask,
    pub within_ms: u64,
    pub paths: Vec<WirePath>,
}

/// The answers to one batch, in its order (`None`: not answered in time).
#[derive(Debug)]
pub(super) struct Reply {
    pub batch: u64,
    pub answers: Vec<Option<Answer>>,
}

#[derive(Serialize, Deserialize)]
struct WireReply {
    batch: u64,
    answers: Vec<Option<WireAnswer>>,
}

impl Reply {
    /// The reply as one line, its end included.
    pub(super) fn into_line(self) -> serde_json::Result<Vec<u8>> {
        let wire = WireReply {
            batch: self.batch,
            answers: self
                .answers
                .into_iter()
                .map(|a| a.map(WireAnswer::from))
                .collect(),
        };
        let mut line = serde_json::to_vec(&wire)?;
        line.push(b'\n');
        Ok(line)
    }

    /// The reply in `line`; `None` when it is not one (a helper that says that is broken).
    pub(super) fn from_line(line: &str) -> Option<Reply> {
        let wire: WireReply = serde_json::from_str(line).ok()?;
        let answers = wire
            .answers
            .into_iter()
            .map(|a| a.map(Answer::try_from).transpose())
            .collect::<Result<_, ()>>()
            .ok()?;
        Some(Reply {
            batch: wire.batch,
            answers,
        })
    }
}

/// An answer as sent: `[kind, mtime, len, identity, coarse, content, error, place]`, the
/// fingerprint's fields zero for a file that is not there; `place` only for
/// [`Ask::LookAndPlace`], as `[missing_dir, exposed]`.
#[derive(Debug, Serialize, Deserialize)]
struct WireAnswer(
    u8,
    Option<(i64, u32)>,
    u64,
    (u64, u64),
    bool,
    Option<u64>,
    Option<String>,
    Option<(Option<String>, Option<String>)>,
);

const PRESENT: u8 = 0;
const ABSENT: u8 = 1;
const UNKNOWN: u8 = 2;

impl From<Answer> for WireAnswer {
    fn from(answer: Answer) -> WireAnswer {
        let ((observation, error), place) = match answer {
            Answer::Look(look) => (look, None),
            Answer::Placed(look, place) => (look, Some((place.missing_dir, place.exposed))),
        };
        let (kind, print) = match observation {
            Observation::Present(print) => (PRESENT, print),
            Observation::Absent => (ABSENT, Fingerprint::default()),
            Observation::Unknown => (UNKNOWN, Fingerprint::default()),
        };
        WireAnswer(
            kind,
            print.mtime.and_then(time_to_wire),
            print.len,
            print.identity,
            print.coarse,
            print.content,
            error,
            place,
        )
    }
}

impl TryFrom<WireAnswer> for Answer {
    type Error = ();

    fn try_from(wire: WireAnswer) -> Result<Answer, ()> {
        let WireAnswer(kind, mtime, len, identity, coarse, content, error, place) = wire;
        let observation = match kind {
            PRESENT => Observation::Present(Fingerprint {
                mtime: mtime.map(time_from_wire).transpose()?,
                len,
                identity,
                coarse,
                content,
            }),
            ABSENT => Observation::Absent,
            UNKNOWN => Observation::Unknown,
            _ => return Err(()),
        };
        let look = (observation, error);
        Ok(match place {
            None => Answer::Look(look),
            Some((missing_dir, exposed)) => Answer::Placed(
                look,
                Place {
                    missing_dir,
                    exposed,
                },
            ),
        })
    }
}

/// A time as whole seconds from the Unix epoch, negative before it, and nanoseconds after
/// those (a file's time can be set to before 1970, by whoever may write the file).
fn time_to_wire(t: SystemTime) -> Option<(i64, u32)> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => Some((i64::try_from(after.as_secs()).ok()?, after.subsec_nanos())),
        Err(e) => {
            let before = e.duration();
            let (secs, nanos) = match before.subsec_nanos() {
                0 => (before.as_secs(), 0),
                n => (before.as_secs().checked_add(1)?, 1_000_000_000 - n),
            };
            Some((i64::try_from(secs).ok()?.checked_neg()?, nanos))
        }
    }
}

fn time_from_wire((secs, nanos): (i64, u32)) -> Result<SystemTime, ()> {
    if nanos >= 1_000_000_000 {
        return Err(());
    }
    let whole = Duration::from_secs(secs.unsigned_abs());
    let second = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    second
        .and_then(|s| s.checked_add(Duration::from_nanos(nanos.into())))
        .ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn across(answers: Vec<Option<Answer>>) -> Vec<Option<Answer>> {
        let line = Reply { batch: 3, answers }.into_line().unwrap();
        let line = std::str::from_utf8(&line).unwrap();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let reply = Reply::from_line(line).unwrap();
        assert_eq!(reply.batch, 3);
        reply.answers
    }

    #[test]
    fn every_kind_of_answer_goes_across_as_it_was_made() {
        let print = |secs: i64, nanos: u32| Fingerprint {
            mtime: time_from_wire((secs, nanos)).ok(),
            len: 7,
            identity: (64_768, u64::MAX),
            coarse: secs % 2 == 0,
            content: (secs % 2 == 0).then_some(u64::MAX - 1),
        };
        let place = Place {
            missing_dir: Some("/gone".into()),
            exposed: Some("any user can write \"it\"\n".into()),
        };
        let answers = vec![
            Some(Answer::Look((
                Observation::Present(print(1_796_628_701, 211)),
                None,
            ))),
            Some(Answer::Look((
                Observation::Present(print(-5, 300_000_000)),
                None,
            ))),
            Some(Answer::Look((
                Observation::Present(Fingerprint::default()),
                None,
            ))),
            Some(Answer::Look((Observation::Absent, None))),
            Some(Answer::Look((
                Observation::Unknown,
                Some("permission denied".into()),
            ))),
            None,
            Some(Answer::Placed((Observation::Absent, None), place)),
            Some(Answer::Placed(
                (Observation::Present(print(0, 0)), None),
                Place::default(),
            )),
        ];
        assert_eq!(across(answers.clone()), answers);
    }

    #[test]
    fn what_is_not_an_answer_is_refused() {
        for line in [
            r#"{"batch":1,"answers":[[3,null,0,[0,0],false,null,null,null]]}"#,
            r#"{"batch":1,"answers":[[0,[1,1000000000],0,[0,0],false,null,null,null]]}"#,
            r#"{"batch":1,"answers":[[0,null,0,[0,0],false,null,null]]}"#,
            r#"{"batch":1,"answers":[{"Look":[{"Present":{}},null]}]}"#,
        ] {
            assert!(Reply::from_line(line).is_none(), "{line}");
        }
        let empty = Reply::from_line(r#"{"batch":9,"answers":[]}"#).unwrap();
        assert_eq!((empty.batch, empty.answers.len()), (9, 0));
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        #[test]
        fn a_time_goes_across_to_the_nanosecond(
            secs in -(1_i64 << 40)..(1_i64 << 40),
            nanos in 0_u32..1_000_000_000,
        ) {
            let t = time_from_wire((secs, nanos)).unwrap();
            prop_assert_eq!(time_to_wire(t), Some((secs, nanos)));
        }
    }
}
