//! Addresses of listeners and clients: AF_UNIX paths, Linux abstract names
//! and TCP over IPv4 or IPv6, parsed and printed as text, and
//! `arbitrary_address` for private temporary unix sockets.
//!
//! The family is inferred from the address as CPython's `address_type`
//! does: a `(host, port)` pair is AF_INET, anything else is AF_UNIX.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use rustix::net::{SocketAddrAny, SocketAddrUnix};

use crate::{Error, Result};

/// The capacity of `sockaddr_un.sun_path` on Linux, including the
/// terminating NUL of a path (`man 7 unix`).
pub(crate) const SUN_PATH_LEN: usize = 108;

/// An address family: what kind of socket a [`Listener`](crate::Listener)
/// or a client uses (CPython's `'AF_UNIX'` and `'AF_INET'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Unix-domain stream sockets: filesystem paths and Linux abstract names.
    Unix,
    /// TCP over IPv4 or IPv6.
    Inet,
}

impl Family {
    /// CPython's name for the family, `"AF_UNIX"` or `"AF_INET"`.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Unix => "AF_UNIX",
            Family::Inet => "AF_INET",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The address of a listener or a client.
///
/// As text ([`FromStr`] and [`Display`](fmt::Display)):
///
/// | text | address |
/// |---|---|
/// | `127.0.0.1:5000`, `localhost:0`, `[::1]:5000` | [`Address::Inet`] |
/// | `@name` or `"\0name"` | [`Address::Abstract`] (Linux) |
/// | anything else, e.g. `/tmp/sock` | [`Address::Unix`] |
///
/// A host name is resolved when the text is parsed, preferring IPv4 as
/// CPython's AF_INET sockets do. A string starting with two backslashes is
/// a Windows named pipe (`AF_PIPE`), which is refused, as CPython refuses
/// it on POSIX.
///
/// # Examples
///
/// ```
/// use mp_conn::{Address, Family};
///
/// let tcp: Address = "127.0.0.1:5000".parse()?;
/// assert_eq!(tcp.family(), Family::Inet);
/// assert_eq!(tcp.to_string(), "127.0.0.1:5000");
///
/// let path: Address = "/tmp/my.sock".parse()?;
/// assert_eq!(path, Address::Unix("/tmp/my.sock".into()));
///
/// let abstract_name: Address = "@my-service".parse()?;
/// assert_eq!(abstract_name, Address::Abstract(b"my-service".to_vec()));
/// assert_eq!(abstract_name.family(), Family::Unix);
///
/// assert!(r"\\.\pipe\test".parse::<Address>().is_err());
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A unix socket at a filesystem path; the listener unlinks it on close.
    Unix(PathBuf),
    /// A Linux abstract unix socket name, without the leading NUL byte.
    /// Nothing appears in the filesystem, so nothing needs unlinking.
    Abstract(Vec<u8>),
    /// A TCP address, IPv4 or IPv6. Port 0 asks the kernel for a free port;
    /// [`Listener::address`](crate::Listener::address) then reports the one
    /// it got.
    Inet(SocketAddr),
}

impl Address {
    /// The family this address belongs to (CPython's `address_type`).
    pub fn family(&self) -> Family {
        match self {
            Address::Unix(_) | Address::Abstract(_) => Family::Unix,
            Address::Inet(_) => Family::Inet,
        }
    }

    /// The socket address to bind or connect to.
    pub(crate) fn to_sockaddr(&self) -> Result<SocketAddrAny> {
        match self {
            Address::Inet(addr) => Ok((*addr).into()),
            Address::Unix(path) => {
                let bytes = path.as_os_str().as_bytes();
                if bytes.is_empty() || bytes.contains(&0) {
                    return Err(Error::BadAddress(format!(
                        "invalid AF_UNIX path {:?}",
                        path.display()
                    )));
                }
                if bytes.len() >= SUN_PATH_LEN {
                    return Err(Error::BadAddress(format!(
                        "AF_UNIX path too long ({} bytes, at most {}): {}",
                        bytes.len(),
                        SUN_PATH_LEN - 1,
                        path.display()
                    )));
                }
                Ok(SocketAddrUnix::new(path.as_path())?.into())
            }
            Address::Abstract(name) => {
                if name.len() >= SUN_PATH_LEN {
                    return Err(Error::BadAddress(format!(
                        "abstract socket name too long ({} bytes, at most {})",
                        name.len(),
                        SUN_PATH_LEN - 1
                    )));
                }
                Ok(SocketAddrUnix::new_abstract_name(name)?.into())
            }
        }
    }

    /// The address a socket call returned, if it names anything (an
    /// unnamed unix socket, such as a client's end, gives `None`, where
    /// CPython gives `''`).
    pub(crate) fn from_sockaddr(addr: &SocketAddrAny) -> Option<Address> {
        if let Ok(inet) = SocketAddr::try_from(addr.clone()) {
            return Some(Address::Inet(inet));
        }
        let unix = SocketAddrUnix::try_from(addr.clone()).ok()?;
        if unix.is_unnamed() {
            return None;
        }
        if let Some(name) = unix.abstract_name() {
            // rustix decodes an unnamed address as an empty abstract name;
            // no socket can be bound to one (autobind picks 5 hex digits).
            if name.is_empty() {
                return None;
            }
            return Some(Address::Abstract(name.to_vec()));
        }
        let path = unix.path_bytes()?;
        if path.is_empty() {
            return None;
        }
        Some(Address::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(
            path,
        ))))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_path_buf())
    }
}

impl FromStr for Address {
    type Err = Error;

    /// Parses `HOST:PORT`, `[V6]:PORT`, `@name` or `"\0name"`, or a path.
    ///
    /// # Errors
    ///
    /// [`Error::BadAddress`] for an empty string, a Windows named pipe
    /// (`\\.\pipe\...`, CPython's ValueError on POSIX), a bracketed IPv6
    /// address without a valid port, or a host name that does not resolve.
    fn from_str(s: &str) -> Result<Address> {
        if s.is_empty() {
            return Err(Error::BadAddress("empty address".into()));
        }
        if s.starts_with(r"\\") {
            return Err(Error::BadAddress(format!(
                "address {s:?} is a Windows named pipe (AF_PIPE), which this platform lacks"
            )));
        }
        if let Some(name) = s.strip_prefix('\0').or_else(|| s.strip_prefix('@')) {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Address::Inet(addr));
        }
        if s.starts_with('[') {
            return Err(Error::BadAddress(format!(
                "{s:?} is not an IPv6 address of the form [ADDR]:PORT"
            )));
        }
        if let Some((host, port)) = s.rsplit_once(':')
            && !host.is_empty()
            && !host.contains('/')
            && !host.contains(':')
            && let Ok(port) = port.parse::<u16>()
        {
            return resolve(host, port).map(Address::Inet);
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }
}

/// Resolves a host name, preferring IPv4 as CPython's AF_INET sockets do.
fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::BadAddress(format!("cannot resolve {host:?}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| Error::BadAddress(format!("{host:?} resolves to no address")))
}

impl fmt::Display for Address {
    /// `HOST:PORT` (`[V6]:PORT`), the path, or `@name` for an abstract name
    /// (bytes that are not UTF-8 are shown as U+FFFD).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Inet(addr) => write!(f, "{addr}"),
        }
    }
}

/// A fresh address nobody listens on yet (CPython's `arbitrary_address`).
///
/// - [`Family::Inet`]: `127.0.0.1:0`, so that binding picks a free port
///   (CPython uses `('localhost', 0)`).
/// - [`Family::Unix`]: `sock-` and 16 random hex digits in a new private
///   (mode 0700) `pymp-` directory under the temporary directory. When
///   `$TMPDIR` is so long that the path would not fit in `sun_path`, `/tmp`
///   is used instead. A [`Listener`](crate::Listener) bound to it removes
///   both the socket and the directory when it closes.
///
/// # Errors
///
/// Creating the directory or reading the random source failed.
///
/// # Examples
///
/// ```
/// use mp_conn::{arbitrary_address, Address, Family};
///
/// let Address::Unix(path) = arbitrary_address(Family::Unix)? else { unreachable!() };
/// let name = path.file_name().unwrap().to_str().unwrap();
/// assert!(name.starts_with("sock-"));
/// assert!(path.parent().unwrap().file_name().unwrap().to_str().unwrap().starts_with("pymp-"));
/// # std::fs::remove_dir(path.parent().unwrap())?;
/// # Ok::<(), mp_conn::Error>(())
/// ```
pub fn arbitrary_address(family: Family) -> Result<Address> {
    match family {
        Family::Inet => Ok(Address::Inet(SocketAddr::from(([127, 0, 0, 1], 0)))),
        Family::Unix => {
            let dir = private_temp_dir()?;
            let path = dir.join(format!("sock-{}", random_hex(8)?));
            Ok(Address::Unix(path))
        }
    }
}

/// The `pymp-` directories this process made for arbitrary addresses, so
/// that a closing listener removes only a directory it may remove.
static OUR_TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The length of `/pymp-XXXXXXXX/sock-XXXXXXXXXXXXXXXX`.
const SUFFIX_LEN: usize = "/pymp-".len() + 8 + "/sock-".len() + 16;

fn private_temp_dir() -> Result<PathBuf> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() + SUFFIX_LEN >= SUN_PATH_LEN {
        base = PathBuf::from("/tmp");
    }
    private_dir_in(&base)
}

/// A new private `pymp-` directory in `base`.
fn private_dir_in(base: &Path) -> Result<PathBuf> {
    loop {
        let dir = base.join(format!("pymp-{}", random_hex(4)?));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                lock_dirs().push(dir.clone());
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(crate::error::AtPlace::path(
                    "cannot create the socket directory",
                    &dir,
                    e,
                ));
            }
        }
    }
}

fn lock_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    OUR_TEMP_DIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes `dir` if [`arbitrary_address`] made it in this process and it is
/// now empty.
pub(crate) fn remove_our_temp_dir(dir: &Path) {
    let mut dirs = lock_dirs();
    if let Some(i) = dirs.iter().position(|d| d == dir)
        && std::fs::remove_dir(dir).is_ok()
    {
        dirs.swap_remove(i);
    }
}

/// Stops treating `dir` as one this process made (its listener was given
/// to another process, which removes it).
pub(crate) fn forget_our_temp_dir(dir: &Path) {
    lock_dirs().retain(|d| d != dir);
}

/// Treats `dir` as one this process made, if it is a private `pymp-`
/// directory (a listener a parent bound to an [`arbitrary_address`] and
/// gave to this process).
pub(crate) fn adopt_our_temp_dir(dir: &Path) {
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("pymp-"));
    let mut dirs = lock_dirs();
    if ours && !dirs.iter().any(|d| d == dir) {
        dirs.push(dir.to_path_buf());
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = [0u8; 16];
    let buf = &mut buf[..bytes];
    getrandom::fill(buf).map_err(std::io::Error::from)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_directory_that_cannot_be_made_is_named() {
        let base = std::env::temp_dir().join(format!("mp-conn-no-tmpdir-{}", std::process::id()));
        let err = private_dir_in(&base).unwrap_err();
        let shown = format!("{err:?}");
        let expected = format!(
            "cannot create the socket directory {}/pymp-",
            base.display()
        );
        assert!(shown.starts_with(&expected), "{shown}");
        assert!(shown.contains("No such file or directory"), "{shown}");
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "127.0.0.1:80".parse::<Address>().unwrap(),
            Address::Inet(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        let v6: Address = "[::1]:8080".parse().unwrap();
        assert_eq!(v6, Address::Inet("[::1]:8080".parse().unwrap()));
        assert_eq!(v6.to_string(), "[::1]:8080");
        let local: Address = "localhost:0".parse().unwrap();
        let Address::Inet(local) = local else {
            panic!("not inet")
        };
        assert!(local.ip().is_loopback());
        assert_eq!(
            "\0name".parse::<Address>().unwrap(),
            Address::Abstract(b"name".to_vec())
        );
        assert_eq!(
            "@name".parse::<Address>().unwrap().to_string(),
            "@name".to_string()
        );
        assert_eq!(
            "/tmp/x:1".parse::<Address>().unwrap(),
            Address::Unix("/tmp/x:1".into())
        );
        assert_eq!(
            "relative.sock".parse::<Address>().unwrap(),
            Address::Unix("relative.sock".into())
        );
        assert_eq!(
            "/tmp/a.sock".parse::<Address>().unwrap().to_string(),
            "/tmp/a.sock"
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        // CONN-33: an AF_PIPE address is a ValueError on POSIX.
        assert!(matches!(
            r"\\.\test".parse::<Address>(),
            Err(Error::BadAddress(_))
        ));
        assert!("".parse::<Address>().is_err());
        assert!("[::1]".parse::<Address>().is_err());
        assert!("[::1]:99999".parse::<Address>().is_err());
        assert!(
            "no-such-host.invalid:80".parse::<Address>().is_err(),
            "the .invalid TLD never resolves"
        );
        let long = Address::Unix(PathBuf::from("/".repeat(SUN_PATH_LEN)));
        assert!(matches!(long.to_sockaddr(), Err(Error::BadAddress(_))));
        let nul = Address::Unix(PathBuf::from("/tmp/a\0b"));
        assert!(matches!(nul.to_sockaddr(), Err(Error::BadAddress(_))));
    }

    #[test]
    fn families_are_inferred() {
        assert_eq!(
            "1.2.3.4:5".parse::<Address>().unwrap().family(),
            Family::Inet
        );
        assert_eq!("/x".parse::<Address>().unwrap().family(), Family::Unix);
        assert_eq!("@x".parse::<Address>().unwrap().family(), Family::Unix);
        assert_eq!(Family::Unix.to_string(), "AF_UNIX");
        assert_eq!(Family::Inet.name(), "AF_INET");
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            Address::Inet("127.0.0.1:9".parse().unwrap()),
            Address::Inet("[::1]:9".parse().unwrap()),
            Address::Unix("/tmp/some.sock".into()),
            Address::Abstract(b"abs\x01name".to_vec()),
        ] {
            let sa = a.to_sockaddr().unwrap();
            assert_eq!(Address::from_sockaddr(&sa), Some(a));
        }
        let unnamed: SocketAddrAny = SocketAddrUnix::new_unnamed().into();
        assert_eq!(Address::from_sockaddr(&unnamed), None);
    }

    #[test]
    fn arbitrary_addresses_are_private_and_short() {
        assert_eq!(
            arbitrary_address(Family::Inet).unwrap(),
            Address::Inet(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        let a = arbitrary_address(Family::Unix).unwrap();
        let b = arbitrary_address(Family::Unix).unwrap();
        assert_ne!(a, b);
        let Address::Unix(path) = a else {
            panic!("not unix")
        };
        assert!(path.as_os_str().len() < SUN_PATH_LEN);
        let dir = path.parent().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        remove_our_temp_dir(dir);
        assert!(!dir.exists());
        // A directory we did not make is left alone.
        let Address::Unix(other) = b else {
            panic!("not unix")
        };
        let other_dir = other.parent().unwrap();
        remove_our_temp_dir(Path::new("/tmp"));
        remove_our_temp_dir(other_dir);
        assert!(!other_dir.exists());
    }
}
