//! The client side of NBD's fixed-newstyle handshake: what thinsr says to a server before
//! it hands the connection to the kernel's NBD driver (which speaks only the transmission
//! phase), or reads an export itself. GO with the export's name (the size and flags come
//! back as NBD_INFO_EXPORT); EXPORT_NAME where a server does not know GO.

use std::io::{self, Read, Write};

use super::nbd_proto::*;
use crate::image::be;

/// What the server said of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub size: u64,
    /// Transmission flags (NBD_FLAG_*): read-only, flush, trim, ...
    pub flags: u16,
}

impl Negotiated {
    pub fn read_only(&self) -> bool {
        self.flags & TFLAG_READ_ONLY != 0
    }
}

fn protocol(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn option<W: Write>(w: &mut W, option: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(16 + data.len());
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

/// One option reply: (type, data).
fn reply<R: Read>(r: &mut R, option: u32) -> io::Result<(u32, Vec<u8>)> {
    let mut h = [0u8; 20];
    r.read_exact(&mut h)?;
    if be::get64(&h, 0) != REPLY_MAGIC || be::get32(&h, 8) != option {
        return Err(protocol(
            "an option reply without its magic or for another option",
        ));
    }
    let len = be::get32(&h, 16);
    if len > 64 * 1024 {
        return Err(protocol(format!("an option reply of {len} bytes")));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok((be::get32(&h, 12), data))
}

/// Negotiates export `name` on `s`, up to the transmission phase.
pub fn negotiate<S: Read + Write>(s: &mut S, name: &str) -> io::Result<Negotiated> {
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello)?;
    if be::get64(&hello, 0) != NBDMAGIC || be::get64(&hello, 8) != IHAVEOPT {
        return Err(protocol("not a newstyle NBD server"));
    }
    let server = be::get16(&hello, 16);
    if server & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol("the server does not speak fixed newstyle"));
    }
    let no_zeroes = server & FLAG_NO_ZEROES;
    s.write_all(&u32::from(FLAG_FIXED_NEWSTYLE | no_zeroes).to_be_bytes())?;
    let mut go = (name.len() as u32).to_be_bytes().to_vec();
    go.extend_from_slice(name.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    option(s, OPT_GO, &go)?;
    let mut export = None;
    loop {
        let (kind, data) = reply(s, OPT_GO)?;
        match kind {
            REP_INFO if data.len() >= 12 && be::get16(&data, 0) == INFO_EXPORT => {
                export = Some(Negotiated {
                    size: be::get64(&data, 2),
                    flags: be::get16(&data, 10),
                });
            }
            REP_INFO => {}
            REP_ACK => {
                return export.ok_or_else(|| protocol("GO acknowledged without the export's size"))
            }
            REP_ERR_UNSUP => break,
            k if k & (1 << 31) != 0 => {
                return Err(protocol(format!(
                    "the server refused export '{name}' (error {:#x}: {})",
                    k,
                    String::from_utf8_lossy(&data)
                )))
            }
            _ => return Err(protocol(format!("an unexpected reply {kind:#x} to GO"))),
        }
    }
    // An older server: EXPORT_NAME, answered with the size and flags (and 124 zeros
    // unless both sides said NO_ZEROES).
    option(s, OPT_EXPORT_NAME, name.as_bytes())?;
    let mut b = [0u8; 10];
    s.read_exact(&mut b)?;
    if no_zeroes == 0 {
        let mut pad = [0u8; 124];
        s.read_exact(&mut pad)?;
    }
    Ok(Negotiated {
        size: be::get64(&b, 0),
        flags: be::get16(&b, 8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::nbd_server::{self, Export};
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_client_negotiates_with_thinsrs_server_and_sees_read_only() {
        for writable in [false, true] {
            let (mut srv, mut cli) = UnixStream::pair().unwrap();
            let path = std::env::temp_dir().join(format!(
                "thinsr-nbd-client-{}-{writable}",
                std::process::id()
            ));
            std::fs::write(&path, vec![7u8; 1 << 16]).unwrap();
            let file = std::fs::File::options()
                .read(true)
                .write(writable)
                .open(&path)
                .unwrap();
            let server = std::thread::spawn(move || {
                let export = Export {
                    name: "disk",
                    file: &file,
                    size: 1 << 16,
                    writable,
                    unmap_block: None,
                    direct: None,
                    on_write: None,
                    layered: None,
                };
                nbd_server::serve(&mut srv, &export).unwrap()
            });
            let n = negotiate(&mut cli, "disk").unwrap();
            assert_eq!(n.size, 1 << 16);
            assert_eq!(n.read_only(), !writable);
            // Transmission: a READ of the first 4 bytes, then DISC.
            let mut req = REQUEST_MAGIC.to_be_bytes().to_vec();
            req.extend_from_slice(&[0, 0, 0, 0]);
            req.extend_from_slice(&5u64.to_be_bytes());
            req.extend_from_slice(&0u64.to_be_bytes());
            req.extend_from_slice(&4u32.to_be_bytes());
            cli.write_all(&req).unwrap();
            let mut r = [0u8; 20];
            cli.read_exact(&mut r).unwrap();
            assert_eq!((be::get32(&r, 4), &r[16..]), (0, &[7u8; 4][..]));
            let mut disc = REQUEST_MAGIC.to_be_bytes().to_vec();
            disc.extend_from_slice(&[0, 0, 0, 2]);
            disc.extend_from_slice(&[0u8; 20]);
            cli.write_all(&disc).unwrap();
            assert_eq!(server.join().unwrap().requests, 2);
            std::fs::remove_file(&path).ok();
        }
    }

    #[test]
    fn a_server_that_is_not_nbd_is_refused() {
        let (mut srv, mut cli) = UnixStream::pair().unwrap();
        srv.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        let e = negotiate(&mut cli, "disk").unwrap_err();
        assert!(e.to_string().contains("not a newstyle NBD server"), "{e}");
    }
}
