//! Archives built from fuzz input, with valid checksums and pax record
//! lengths, so the fuzzer spends its time on names, links, types and pax
//! keys instead of on checksums it cannot guess.
//!
//! Input: entries separated by `0xff`; each is a type flag byte, a flags
//! byte (1: put `pax` in an `x` header before the entry, 2: write the
//! size field in base-256, 4: give the name through a GNU `L` entry, 8:
//! ustar magic instead of GNU's), then `name \0 link \0 pax \0 data`, where
//! `pax` is `key=value` lines.

const BLOCK: usize = 512;

fn octal(f: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = f.len() - 1);
    if s.len() == f.len() {
        f.copy_from_slice(s.as_bytes());
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], size: u64, flags: u8) {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if flags & 2 != 0 {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    } else {
        octal(&mut h[124..136], size);
    }
    octal(&mut h[136..148], 0);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    if flags & 8 != 0 {
        h[257..265].copy_from_slice(b"ustar\x0000");
    } else {
        h[257..265].copy_from_slice(b"ustar  \x00");
    }
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
}

fn data(out: &mut Vec<u8>, d: &[u8]) {
    out.extend_from_slice(d);
    out.resize(out.len().next_multiple_of(BLOCK), 0);
}

/// One pax record: `<len> key=value\n`, its length counting itself.
fn pax_record(out: &mut Vec<u8>, line: &[u8]) {
    let body = line.len() + 2; // ' ' and '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// The archive `input` describes, with its end-of-archive blocks.
pub fn build(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in input.split(|&b| b == 0xff).take(64) {
        let [kind, flags, rest @ ..] = entry else {
            continue;
        };
        let mut parts = rest.splitn(4, |&b| b == 0);
        let name = parts.next().unwrap_or_default();
        let link = parts.next().unwrap_or_default();
        let pax = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default();
        if flags & 1 != 0 && !pax.is_empty() {
            let mut recs = Vec::new();
            for line in pax.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                pax_record(&mut recs, line);
            }
            header(&mut out, b"PaxHeaders/x", b'x', b"", recs.len() as u64, 0);
            data(&mut out, &recs);
        }
        if flags & 4 != 0 {
            header(
                &mut out,
                b"././@LongLink",
                b'L',
                b"",
                name.len() as u64 + 1,
                0,
            );
            let mut n = name.to_vec();
            n.push(0);
            data(&mut out, &n);
        }
        header(&mut out, name, *kind, link, body.len() as u64, *flags);
        data(&mut out, body);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}
