//! The device policy of every container (audit F4): which device nodes its
//! processes may create and open, whatever nodes exist in their tree.
//!
//! LXC's default allow-list: any node may be *created* (`m`), and only the
//! standard character devices a system container needs may be read or
//! written: null, zero, full, random, urandom, tty, console, ptmx, the pty
//! slaves, fuse and tun. Installed twice, as LXC does on hybrid hosts:
//! - in the v1 `devices` controller, when the host has it (`devices.deny a`,
//!   then one `devices.allow` line per rule);
//! - as a cgroup-v2 BPF device program attached to the container's unified
//!   cgroup (`BPF_PROG_TYPE_CGROUP_DEVICE`), which the kernel also runs on
//!   hybrid hosts and is the only device control on pure v2 ones. It is
//!   attached with `BPF_F_ALLOW_MULTI`, so programs below (a nested
//!   runtime's) can only narrow it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A device type as the rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    Char,
    Block,
}

/// One allow rule: type, major and minor (`None` = any), access bits
/// (`r` = 2, `w` = 4, `m` = 1, as the BPF context encodes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
const RWM: u32 = READ | WRITE | MKNOD;

const fn chr(major: u32, minor: Option<u32>) -> Rule {
    Rule {
        kind: DevType::Char,
        major: Some(major),
        minor,
        access: RWM,
    }
}

/// LXC's default list (`lxc.cgroup.devices.*` of its common config).
pub const DEFAULT_RULES: [Rule; 13] = [
    Rule {
        kind: DevType::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule {
        kind: DevType::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    chr(1, Some(3)),    // null
    chr(1, Some(5)),    // zero
    chr(1, Some(7)),    // full
    chr(1, Some(8)),    // random
    chr(1, Some(9)),    // urandom
    chr(5, Some(0)),    // tty
    chr(5, Some(1)),    // console
    chr(5, Some(2)),    // ptmx
    chr(136, None),     // pty slaves (the container's devpts and its console)
    chr(10, Some(229)), // fuse
    chr(10, Some(200)), // tun
];

impl Rule {
    /// The rule as a line of the v1 `devices.allow` file.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        let t = match self.kind {
            DevType::Char => 'c',
            DevType::Block => 'b',
        };
        format!("{t} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// Writes the policy into a v1 `devices` cgroup directory (before any task
/// joins it).
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> io::Result<()> {
    std::fs::write(dir.join("devices.deny"), "a")?;
    for r in rules {
        std::fs::write(dir.join("devices.allow"), r.v1_line())?;
    }
    Ok(())
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (linux/bpf.h): class | size/op | source.
const LDX_MEM_W: u8 = 0x61;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JNE_K: u8 = 0x55;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;

/// The program: returns 1 (allow) for the first matching rule, else 0.
/// Registers: r2 type, r3 access, r4 major, r5 minor (from the context
/// `{u32 access_type = access << 16 | type; u32 major; u32 minor}`).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_MOV_X, 3, 2, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut tests = vec![(
            JMP_JNE_K,
            2,
            match r.kind {
                DevType::Block => 1,
                DevType::Char => 2,
            },
        )];
        if r.access & RWM != RWM {
            // Any asked-for access bit the rule lacks: not this rule.
            tests.push((JMP_JSET_K, 3, (!r.access & RWM) as i32));
        }
        if let Some(m) = r.major {
            tests.push((JMP_JNE_K, 4, m as i32));
        }
        if let Some(m) = r.minor {
            tests.push((JMP_JNE_K, 5, m as i32));
        }
        let n = tests.len();
        for (i, (op, reg, imm)) in tests.into_iter().enumerate() {
            // Skip the rest of the tests and the two instructions of the verdict.
            let skip = (n - i - 1 + 2) as i16;
            p.push(insn(op, reg, 0, skip, imm));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The start of `union bpf_attr` for BPF_PROG_LOAD (the kernel accepts a
/// shorter attr than its own, zero-filled).
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the program for `rules` and attaches it to the cgroup-v2
/// directory `dir`. The attachment lives as long as the cgroup.
pub fn attach_v2(dir: &Path, rules: &[Rule]) -> io::Result<()> {
    let prog = program(rules);
    let fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&prog, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text.lines().rev().take(3).collect::<Vec<_>>().join("; ");
            return Err(io::Error::new(
                e.kind(),
                format!("loading the device program: {e}; {last}"),
            ));
        }
    };
    let prog_fd = fd;
    let cg = File::open(dir)?;
    let attach = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: attach is a valid attr prefix, its size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const AttachAttr,
            std::mem::size_of::<AttachAttr>(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("attaching the device program to {}: {e}", dir.display()),
        ));
    }
    Ok(())
}

/// BPF_PROG_LOAD of `prog`, with the verifier's log into `log` if given.
fn load(prog: &[Insn], log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"kante_device");
    let (log_level, log_size, log_buf) = match log {
        Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: attr points at live buffers (program, license, log) for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const LoadAttr,
            std::mem::size_of::<LoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_are_lxcs() {
        let lines: Vec<String> = DEFAULT_RULES.iter().map(Rule::v1_line).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert_eq!(lines[10], "c 136:* rwm");
    }

    /// A tiny interpreter for the instructions `program` emits, to check
    /// the decisions without loading anything into the kernel.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i.imm as u64,
                ALU64_AND_K => r[dst] &= i.imm as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                JMP_JNE_K if r[dst] != i.imm as u64 => pc += i.off as usize,
                JMP_JSET_K if r[dst] & i.imm as u64 != 0 => pc += i.off as usize,
                JMP_JNE_K | JMP_JSET_K => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_list() {
        let p = program(&DEFAULT_RULES);
        let (c, b) = (2, 1);
        // /dev/null read and write.
        assert_eq!(run(&p, c, READ | WRITE, 1, 3), 1);
        // Any pty slave; fuse; tun.
        assert_eq!(run(&p, c, READ, 136, 7), 1);
        assert_eq!(run(&p, c, READ | WRITE, 10, 229), 1);
        // Making a node is allowed, opening it is not: a host disk, kmsg, mem.
        assert_eq!(run(&p, b, MKNOD, 7, 0), 1);
        assert_eq!(run(&p, b, READ, 7, 0), 0);
        assert_eq!(run(&p, b, WRITE, 8, 0), 0);
        assert_eq!(run(&p, c, WRITE, 1, 11), 0);
        assert_eq!(run(&p, c, READ, 1, 1), 0);
        // mknod together with read is not covered by the m-only rule.
        assert_eq!(run(&p, c, READ | MKNOD, 1, 11), 0);
    }
}
