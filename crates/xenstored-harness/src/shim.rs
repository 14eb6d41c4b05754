//! Building `shim/fakexen.c` into `libfakexen.so` with the system C compiler.
//!
//! Built once per process, into `$TMPDIR/xenstored-harness-<uid>/libfakexen-<hash>.so` where
//! the hash is of the C source, so later test processes reuse it and a changed shim is rebuilt.
//! The library is written under a temporary name and renamed into place, so concurrent test
//! binaries never see a half-written file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, Result};

/// The shim's C source, compiled into the harness.
pub(crate) const SOURCE: &str = include_str!("../shim/fakexen.c");

/// FNV-1a: a stable content hash (std's hasher is not guaranteed stable across releases).
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Path of the built shim, building it on the first call.
pub(crate) fn path() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Shim)
}

fn build() -> Result<PathBuf> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("xenstored-harness-{uid}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let so = dir.join(format!("libfakexen-{:016x}.so", fnv1a64(SOURCE.as_bytes())));
    if so.is_file() {
        return Ok(so);
    }
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&dir)
        .map_err(|e| {
            Error::io(
                format!("creating a build directory in {}", dir.display()),
                e,
            )
        })?;
    let src = work.path().join("fakexen.c");
    std::fs::write(&src, SOURCE).map_err(|e| Error::io(format!("writing {}", src.display()), e))?;
    let out = work.path().join("libfakexen.so");
    compile(&src, &out)?;
    std::fs::rename(&out, &so)
        .map_err(|e| Error::io(format!("moving the shim to {}", so.display()), e))?;
    Ok(so)
}

fn compile(src: &Path, out: &Path) -> Result<()> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(out)
        .arg(src)
        .arg("-ldl");
    let shown = format!("{cmd:?}");
    let output = cmd.output().map_err(|e| {
        Error::Shim(format!(
            "running {shown}: {e} (install a C compiler: apt-get install gcc)"
        ))
    })?;
    if !output.status.success() {
        return Err(Error::Shim(format!(
            "{shown} failed ({}):\n{}\n(the shim needs libxen-dev's headers: apt-get install libxen-dev)",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a64(b"ab"), fnv1a64(b"ba"));
    }
}
