//! Shared-memory arenas: a file descriptor and a shared mapping of it.

use std::{
    fmt, io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    ptr::NonNull,
};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::sys::{self, Mapping};

/// Where an [`Arena`]'s bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArenaBacking {
    /// An anonymous `memfd_create` file (Linux), sealed against resizing.
    Memfd,
    /// An unlinked temporary file in this directory: `/dev/shm` when it has
    /// room, else the temp dir (CPython's `Arena._choose_dir`).
    File(PathBuf),
    /// A descriptor received from elsewhere ([`Arena::from_fd`]).
    Received,
}

/// A shared memory area: a file of `size` bytes mapped `MAP_SHARED`
/// (CPython's `multiprocessing.heap.Arena`).
///
/// An arena can be shared with another process by its descriptor
/// ([`AsFd`]): inherited across `fork`, or sent with `SCM_RIGHTS` and
/// rebuilt there with [`Arena::from_fd`], which maps the same bytes. The
/// descriptor is close-on-exec; a process starter that execs must pass it
/// on explicitly.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use mp_heap::Arena;
///
/// let arena = Arena::new(4096)?;
/// let dup = arena.as_fd().try_clone_to_owned()?;
/// let again = Arena::from_fd(dup, arena.size())?;
/// assert_eq!(again.identity()?, arena.identity()?);
/// # std::io::Result::Ok(())
/// ```
pub struct Arena {
    map: Mapping,
    fd: OwnedFd,
    backing: ArenaBacking,
}

impl Arena {
    /// Creates a zero-filled arena of `size` bytes: a `memfd_create` file
    /// with `MFD_CLOEXEC` on Linux, or, where that is refused, an unlinked
    /// file as [`Arena::new_file_backed`] makes.
    ///
    /// # Errors
    ///
    /// `size` is zero, or the file cannot be made, sized or mapped.
    #[doc(alias = "memfd_create")]
    pub fn new(size: usize) -> io::Result<Self> {
        check_size(size)?;
        match Self::new_memfd(size) {
            Ok(arena) => Ok(arena),
            Err(e) if memfd_unavailable(&e) => Self::new_file_backed(size),
            Err(e) => Err(e),
        }
    }

    fn new_memfd(size: usize) -> io::Result<Self> {
        let name = format!("mp-heap-{}", sys::current_pid());
        let fd = rustix::fs::memfd_create(
            name.as_str(),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, size as u64)?;
        // Sealing means a receiver can trust the size: nobody can shrink
        // the file under its mapping and make it fault with SIGBUS.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = Mapping::shared(fd.as_fd(), size)?;
        Ok(Self {
            map,
            fd,
            backing: ArenaBacking::Memfd,
        })
    }

    /// Creates an arena the way CPython does on POSIX: an unlinked
    /// temporary file in `/dev/shm` when that file system has `size` bytes
    /// free (`statvfs`), else in the temp dir; sized with `ftruncate` and
    /// mapped shared.
    ///
    /// # Errors
    ///
    /// `size` is zero, or the file cannot be made, sized or mapped.
    pub fn new_file_backed(size: usize) -> io::Result<Self> {
        check_size(size)?;
        Self::file_backed_in(choose_dir(size), size)
    }

    /// [`Arena::new_file_backed`] in directory `dir`; a failure to make the
    /// file names its path.
    pub(crate) fn file_backed_in(dir: PathBuf, size: usize) -> io::Result<Self> {
        let file = tempfile::Builder::new()
            .prefix(&format!("pym-{}-", sys::current_pid()))
            .tempfile_in(&dir)?;
        // Unlink at once, as CPython does: the name is never needed again.
        let (file, path) = file.into_parts();
        drop(path);
        let fd: OwnedFd = file.into();
        rustix::fs::ftruncate(&fd, size as u64)?;
        let map = Mapping::shared(fd.as_fd(), size)?;
        Ok(Self {
            map,
            fd,
            backing: ArenaBacking::File(dir),
        })
    }

    /// Maps the first `size` bytes of a descriptor received from another
    /// process (CPython's `rebuild_arena`), seeing the same bytes.
    ///
    /// The size is checked against the file now. A memfd arena made by
    /// [`Arena::new`] is sealed against shrinking, so that check holds for
    /// good; a plain file could be truncated later by its sender, and
    /// touching the lost pages would then raise `SIGBUS`
    /// ([`Arena::is_sealed`] tells which).
    ///
    /// # Errors
    ///
    /// `size` is zero, the file is shorter than `size` (mapping it would
    /// fault with `SIGBUS` on access), or `mmap` fails.
    pub fn from_fd(fd: OwnedFd, size: usize) -> io::Result<Self> {
        check_size(size)?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_size < 0 || (st.st_size as u64) < size as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("arena file has {} bytes, {size} were announced", st.st_size),
            ));
        }
        let map = Mapping::shared(fd.as_fd(), size)?;
        Ok(Self {
            map,
            fd,
            backing: ArenaBacking::Received,
        })
    }

    /// Whether the file is sealed against shrinking (`F_SEAL_SHRINK`), so
    /// that no process can make the mapping fault by truncating it.
    pub fn is_sealed(&self) -> bool {
        rustix::fs::fcntl_get_seals(&self.fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
    }

    /// The arena's size in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// Where the bytes live.
    pub fn backing(&self) -> &ArenaBacking {
        &self.backing
    }

    /// The `(st_dev, st_ino)` of the backing file: equal for two arenas
    /// exactly when they map the same memory, which lets a receiver reuse
    /// one mapping for many blocks of one arena.
    ///
    /// # Errors
    ///
    /// `fstat` fails.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The first byte of the mapping.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.map.as_ptr()
    }
}

impl AsFd for Arena {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("size", &self.size())
            .field("fd", &self.fd)
            .field("backing", &self.backing)
            .finish()
    }
}

// ----- serde: an Arena as a process argument (mp-reduction) -----

/// Serializable only inside `mp_reduction::collect_fds` (for example as a
/// process argument of `mp-context`): the fd is duplicated into the fd
/// table and the size written beside its slot.
impl serde::Serialize for Arena {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let slot = mp_reduction::FdSlot::collect(self.fd.as_fd()).map_err(S::Error::custom)?;
        (slot, self.size() as u64).serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`: maps the
/// received fd with [`Arena::from_fd`], so a size the file does not have is
/// an error, never a mapping that faults.
impl<'de> serde::Deserialize<'de> for Arena {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let (slot, size) = <(mp_reduction::FdSlot, u64)>::deserialize(deserializer)?;
        let fd = slot.take().map_err(D::Error::custom)?;
        let size = usize::try_from(size).map_err(D::Error::custom)?;
        Arena::from_fd(fd, size).map_err(D::Error::custom)
    }
}

fn check_size(size: usize) -> io::Result<()> {
    if size == 0 || size > isize::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad arena size {size}"),
        ));
    }
    Ok(())
}

/// `memfd_create` is missing (old kernel, `ENOSYS`) or filtered (seccomp,
/// `EPERM`/`EACCES`), or sealing is not supported (`EINVAL`).
fn memfd_unavailable(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::NOSYS
                | rustix::io::Errno::PERM
                | rustix::io::Errno::ACCESS
                | rustix::io::Errno::INVAL
        )
    )
}

/// CPython's `Arena._choose_dir`: `/dev/shm` on Linux when it has room for
/// `size` bytes, else the temp dir.
fn choose_dir(size: usize) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if cfg!(target_os = "linux")
        && let Ok(st) = rustix::fs::statvfs(shm)
        && st.f_bavail.saturating_mul(st.f_frsize) >= size as u64
    {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_shm_is_chosen_only_when_it_has_room() {
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(choose_dir(4096), Path::new("/dev/shm"));
        }
        // No file system has 8 EiB free: the temp dir it is.
        assert_eq!(choose_dir(isize::MAX as usize), std::env::temp_dir());
    }
}
