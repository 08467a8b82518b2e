//! Nobody but snaprotd's user writes in the state directory: [`check`] refuses, at
//! start, a state directory (or a subdirectory) that another user owns or that
//! group/others may write in, and a subdirectory that is a link. `state_dir` itself may
//! be a link (systemd's `DynamicUser=`): its target is checked. Run as root on a
//! directory another user owns, the process first becomes that user
//! ([`become_owner_if_root`]).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::StateError;
use super::files::{SUBDIRS, make_dir, real_dir};

/// Run as root on a state directory another user owns (the service's, under
/// `DynamicUser=`): the process becomes that user, as the service is, so that its
/// locks and records stay the service's and nothing the owner plants there is acted on
/// with root's rights. Returns the uid taken on.
pub fn become_owner_if_root(root: &Path) -> Result<Option<u32>, StateError> {
    use nix::unistd::{Gid, Uid, geteuid, setgid, setgroups, setuid};
    if !geteuid().is_root() {
        return Ok(None);
    }
    let Ok(meta) = fs::metadata(root) else {
        return Ok(None);
    };
    if !meta.is_dir() || meta.uid() == 0 || meta.mode() & 0o022 != 0 {
        // Root's own directory, or one `check` refuses anyway.
        return Ok(None);
    }
    let (uid, gid) = (meta.uid(), meta.gid());
    setgroups(&[])
        .and_then(|()| setgid(Gid::from_raw(gid)))
        .and_then(|()| setuid(Uid::from_raw(uid)))
        .map_err(|source| StateError::NotOwner {
            path: root.to_path_buf(),
            uid,
            source,
        })?;
    tracing::info!(
        "running as root: working as uid {uid}, the owner of the state directory {}, as the service does",
        root.display()
    );
    Ok(Some(uid))
}

/// Makes sure only this process's user can write in the state directory (creating it
/// when missing): whoever else could would plant links there that snaprotd writes
/// through, or forge the record of a stopped server.
pub fn check(root: &Path) -> Result<(), StateError> {
    // A link (systemd's DynamicUser=) is fine; what it points to is checked, and named
    // in what the operator is told to fix.
    let target = match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(root)?;
            None
        }
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(root) {
            Ok(target) => Some(target),
            Err(e) => {
                let to = fs::read_link(root).unwrap_or_default();
                return Err(StateError::refused(
                    root,
                    format!(
                        "is a link to {}, which cannot be used ({e}): create that directory \
                         (`mkdir -m 700`) or mend the link",
                        to.display()
                    ),
                ));
            }
        },
        _ => None,
    };
    let meta = fs::metadata(root).map_err(StateError::io(root))?;
    if let Some(problem) = not_ours(target.as_deref().unwrap_or(root), &meta) {
        let problem = match &target {
            Some(t) => format!("is a link to {}, which {problem}", t.display()),
            None => problem,
        };
        return Err(StateError::refused(root, problem));
    }
    for name in SUBDIRS {
        let dir = root.join(name);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io(&dir)(e)),
            Ok(meta) => {
                real_dir(&dir, &meta)?;
                if let Some(problem) = not_ours(&dir, &meta) {
                    return Err(StateError::refused(&dir, problem));
                }
            }
        }
    }
    Ok(())
}

/// Why a directory someone other than this process's user may write in is refused, and
/// what to do; `None` when only this user can.
fn not_ours(dir: &Path, meta: &fs::Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let shown = dir.display();
    if !meta.is_dir() {
        return Some("is not a directory".into());
    }
    if owner != me {
        return Some(format!(
            "is owned by uid {owner} (mode {mode:04o}), not by uid {me} that snaprotd runs as; \
             whoever owns it could plant links there or forge the record of a stopped server: \
             run `chown {me} {shown}` (and `chmod 700 {shown}`), or set [daemon] state_dir to a \
             directory of this user"
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "is writable by {} (owner uid {owner}, mode {mode:04o}); whoever else can write there \
             could plant links or forge the record of a stopped server: run `chmod 700 {shown}` \
             (or `chmod go-w {shown}`)",
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            }
        ));
    }
    None
}
