//! `connection.credsFile`: a `.creds` file (user JWT + nkey seed) read at every connect and
//! reconnect, not once, so an operator who writes a new file (a JWT that expired or was
//! revoked, a rotated key) is heard at the next reconnect without a restart. A file that cannot
//! be read or parsed then (half-written, moved) leaves the last good one in use.

use crate::error::{ErrorCode, ReplicationError, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A user JWT and the nkey seed that signs the server's nonce for it.
#[derive(Clone)]
pub struct Creds {
    jwt: String,
    seed: String,
}

/// What the connect callback reads: the file, and the last credentials read from it.
#[derive(Clone)]
pub struct CredsFile {
    path: PathBuf,
    last_good: Arc<Mutex<Creds>>,
}

impl CredsFile {
    /// Reads the file once now: a missing or malformed file is an invalid option at once.
    pub fn open(path: &str) -> Result<CredsFile> {
        let creds = read(Path::new(path)).map_err(|why| {
            ReplicationError::new(
                ErrorCode::InvalidOption,
                format!("option connection.credsFile {path:?} cannot be read: {why}"),
            )
        })?;
        Ok(CredsFile {
            path: PathBuf::from(path),
            last_good: Arc::new(Mutex::new(creds)),
        })
    }

    /// The JWT and the signed `nonce` for a connect: from the file as it is now.
    pub fn sign(&self, nonce: &[u8]) -> std::result::Result<(String, Vec<u8>), String> {
        let mut last = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        match read(&self.path) {
            Ok(now) => *last = now,
            Err(why) => tracing::warn!(
                file = %self.path.display(),
                "connection.credsFile cannot be read now ({why}); connecting with the credentials read before"
            ),
        }
        let key = nkeys::KeyPair::from_seed(&last.seed).map_err(|e| e.to_string())?;
        let signature = key.sign(nonce).map_err(|e| e.to_string())?;
        Ok((last.jwt.clone(), signature))
    }
}

/// The credentials in file `path`; the reason, never the content, when there are none.
fn read(path: &Path) -> std::result::Result<Creds, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    crate::log::register_creds_secrets(&text);
    let creds = parse(&text)
        .ok_or_else(|| "it holds no user JWT and nkey seed in the .creds format".to_string())?;
    // Checked here, so a broken seed is an invalid option and not a refused connect.
    nkeys::KeyPair::from_seed(&creds.seed)
        .map_err(|_| "its nkey seed does not decode".to_string())?;
    Ok(creds)
}

/// The JWT and the seed of a `.creds` file: each the first line after its `-----BEGIN ...`
/// marker line.
pub fn parse(text: &str) -> Option<Creds> {
    let after = |marker: &str| {
        let mut lines = text.lines().map(str::trim);
        lines.find(|l| l.starts_with("---") && l.contains(marker))?;
        lines.find(|l| !l.is_empty()).map(str::to_string)
    };
    let jwt = after("BEGIN NATS USER JWT")?;
    let seed = after("BEGIN USER NKEY SEED")?;
    (!jwt.starts_with("---") && seed.starts_with('S')).then_some(Creds { jwt, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.

-----BEGIN USER NKEY SEED-----
SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM
------END USER NKEY SEED------
";

    #[test]
    fn a_creds_file_gives_its_jwt_and_seed() {
        let creds = parse(CREDS).expect("parsed");
        assert_eq!(
            creds.jwt,
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig"
        );
        assert!(creds.seed.starts_with("SUAIO3"));
        assert!(parse("nothing here").is_none());
        assert!(parse(&CREDS.replace("BEGIN USER NKEY SEED", "BEGIN SOMETHING")).is_none());
    }

    #[test]
    fn a_seed_that_does_not_decode_is_refused_without_showing_it() {
        let dir = std::env::temp_dir().join(format!("creds-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.creds");
        std::fs::write(&path, CREDS.replace("FLM\n", "FLX\n")).unwrap();
        let err = CredsFile::open(path.to_str().unwrap())
            .err()
            .expect("refused");
        assert_eq!(err.code, ErrorCode::InvalidOption);
        assert!(err.message.contains("does not decode"), "{}", err.message);
        assert!(!err.message.contains("SUAIO3"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_read_at_each_sign_and_a_broken_one_leaves_the_last_good() {
        let dir = std::env::temp_dir().join(format!("creds-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user.creds");
        std::fs::write(&path, CREDS).unwrap();
        let file = CredsFile::open(path.to_str().unwrap()).unwrap();
        let (jwt, signature) = file.sign(b"nonce").unwrap();
        assert!(jwt.ends_with(".sig") && !signature.is_empty());
        std::fs::write(&path, CREDS.replace(".e30.sig", ".e30.rotated")).unwrap();
        assert!(file.sign(b"nonce").unwrap().0.ends_with(".rotated"));
        std::fs::write(&path, "half-writ").unwrap();
        assert!(file.sign(b"nonce").unwrap().0.ends_with(".rotated"));
        let err = CredsFile::open(dir.join("missing.creds").to_str().unwrap())
            .err()
            .expect("a missing file is refused");
        assert_eq!(err.code, ErrorCode::InvalidOption);
        assert!(err.message.contains("missing.creds"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
