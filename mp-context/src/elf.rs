//! The names of this executable's functions, read from its own ELF symbol
//! table (`.symtab`): how a target is found in another binary of the same
//! code (`set_executable`), where offsets from an anchor mean nothing.
//!
//! Only 64-bit little-endian ELF (x86-64, AArch64, RISC-V) is read. The
//! layout, from the System V gABI (`elf.h`):
//!
//! ```text
//! Elf64_Ehdr  e_ident[16] ("\x7fELF", class 2 = 64-bit, data 1 = LE) ...
//!             e_entry u64 @0x18   e_shoff u64 @0x28
//!             e_shentsize u16 @0x3a   e_shnum u16 @0x3c
//! Elf64_Shdr  (64 bytes) sh_type u32 @0x04 (2 = SHT_SYMTAB)
//!             sh_offset u64 @0x18   sh_size u64 @0x20   sh_link u32 @0x28
//! Elf64_Sym   (24 bytes) st_name u32 @0   st_info u8 @4 (type: low 4
//!             bits, 2 = STT_FUNC)   st_shndx u16 @6   st_value u64 @8
//! ```
//!
//! A function's run-time address is its `st_value` plus the load bias,
//! which is the run-time entry point (`AT_ENTRY`) minus `e_entry`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

/// The function symbols of one executable, by address (`st_value`).
#[derive(Debug)]
pub(crate) struct FunctionNames {
    by_value: HashMap<u64, Vec<String>>,
    /// Load bias: run-time address minus `st_value`.
    bias: u64,
}

/// The most bytes of symbol table and names read: a guard against a
/// corrupt header, far above what real programs have (a large debug build
/// has a few tens of MiB).
const MAX_TABLE: u64 = 1 << 30;

const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;
const SYM_SIZE: usize = 24;
const SHDR_SIZE: usize = 64;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read_at(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    if len > MAX_TABLE {
        return Err(format!("a section of {len} bytes is too large"));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("reading it failed: {e}"))?;
    Ok(buf)
}

impl FunctionNames {
    /// Reads the function symbols of `exe`, the file this process runs,
    /// whose entry point is at `entry` (`AT_ENTRY`) at run time.
    pub(crate) fn read(exe: &Path, entry: u64) -> Result<FunctionNames, String> {
        let file = File::open(exe).map_err(|e| format!("cannot open it: {e}"))?;
        let ehdr = read_at(&file, 0, 64)?;
        if ehdr.get(..4) != Some(b"\x7fELF") || ehdr[4] != 2 || ehdr[5] != 1 {
            return Err("it is not a 64-bit little-endian ELF file".into());
        }
        let bad = || "its ELF header is malformed".to_string();
        let e_entry = u64_at(&ehdr, 0x18).ok_or_else(bad)?;
        let shoff = u64_at(&ehdr, 0x28).ok_or_else(bad)?;
        let shentsize = u16_at(&ehdr, 0x3a).ok_or_else(bad)? as usize;
        let shnum = u16_at(&ehdr, 0x3c).ok_or_else(bad)? as usize;
        if shentsize != SHDR_SIZE {
            return Err(bad());
        }
        let shdrs = read_at(&file, shoff, (shnum * SHDR_SIZE) as u64)?;
        let section = |i: usize| -> Option<(u32, u64, u64, u32)> {
            let at = i.checked_mul(SHDR_SIZE)?;
            Some((
                u32_at(&shdrs, at + 0x04)?,
                u64_at(&shdrs, at + 0x18)?,
                u64_at(&shdrs, at + 0x20)?,
                u32_at(&shdrs, at + 0x28)?,
            ))
        };
        let (_, sym_off, sym_size, link) = (0..shnum)
            .filter_map(section)
            .find(|s| s.0 == SHT_SYMTAB)
            .ok_or("it has no symbol table (was it stripped? keep `strip = false`)")?;
        let (_, str_off, str_size, _) = section(link as usize).ok_or_else(bad)?;
        let syms = read_at(&file, sym_off, sym_size)?;
        let strs = read_at(&file, str_off, str_size)?;
        let mut by_value: HashMap<u64, Vec<String>> = HashMap::new();
        for sym in syms.chunks_exact(SYM_SIZE) {
            let (Some(name), Some(shndx), Some(value)) =
                (u32_at(sym, 0), u16_at(sym, 6), u64_at(sym, 8))
            else {
                continue;
            };
            if sym[4] & 0xf != STT_FUNC || shndx == 0 || value == 0 {
                continue;
            }
            let Some(tail) = strs.get(name as usize..) else {
                continue;
            };
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            if let Ok(name) = std::str::from_utf8(&tail[..end])
                && !name.is_empty()
            {
                by_value.entry(value).or_default().push(name.to_owned());
            }
        }
        Ok(FunctionNames {
            by_value,
            bias: entry.wrapping_sub(e_entry),
        })
    }

    /// Every name of the function at run-time address `addr` (several when
    /// the compiler merged identical functions), sorted; empty if none.
    pub(crate) fn names_of(&self, addr: usize) -> Vec<String> {
        let mut names = self
            .by_value
            .get(&(addr as u64).wrapping_sub(self.bias))
            .cloned()
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// This process's own function names (`/proc/self/exe`, read once).
///
/// # Errors
///
/// Why the executable's symbols cannot be read (stripped, not ELF).
pub(crate) fn function_names() -> Result<&'static FunctionNames, String> {
    static NAMES: OnceLock<Result<FunctionNames, String>> = OnceLock::new();
    NAMES
        .get_or_init(|| FunctionNames::read(Path::new("/proc/self/exe"), crate::sys::entry_point()))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn some_function() -> u32 {
        std::hint::black_box(7)
    }

    #[test]
    fn names_this_binarys_own_functions() {
        let names = function_names().expect("the test binary has symbols");
        let found = names.names_of(some_function as fn() -> u32 as usize);
        assert!(
            found.iter().any(|n| n.contains("some_function")),
            "{found:?}"
        );
        assert!(names.names_of(1).is_empty());
    }

    #[test]
    fn refuses_what_is_not_elf() {
        let dir = std::env::temp_dir().join(format!("mp-context-elf-{}", std::process::id()));
        std::fs::write(&dir, [b'#'; 100]).unwrap();
        let err = FunctionNames::read(&dir, 0).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(err.contains("not a 64-bit"), "{err}");
    }
}
