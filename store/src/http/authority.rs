//! Repairs the one malformed HTTP/2 request header a widely deployed etcd client sends.
//!
//! etcdctl 3.4 dials each endpoint of `endpoint status` / `endpoint hashkv` (and of every
//! `--cluster` command) through a target whose authority is the endpoint URL itself, scheme
//! included: `:authority: http://10.0.0.1:2379`. etcd's HTTP/2 server takes that; ours refuses
//! the request with PROTOCOL_ERROR, as RFC 9113 lets a server do. The authority means nothing
//! to a member, so the inbound bytes of a client connection pass through [`AuthorityFix`],
//! which rewrites such a value, inside its HPACK header block, into a valid authority of the
//! same length: `------@10.0.0.1:2379`.
//!
//! Keeping the length keeps the client's and the server's HPACK dynamic tables in step: when
//! the client stores the literal in its table the server stores the rewritten one, both count
//! the same size, and later references by index stay valid. Only HEADERS (with their
//! CONTINUATIONs) are examined; every other frame's payload passes through unexamined, mostly
//! without an extra copy; a connection that does not open with the HTTP/2 preface (HTTP/1.1 for
//! the gateway) is left alone, and so is one whose header block is unusually large.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame payload size every HTTP/2 endpoint accepts (SETTINGS_MAX_FRAME_SIZE's floor).
const SAFE_FRAME: usize = 16_384;
/// A header block larger than this is not examined: the connection is passed through as is.
const MAX_BLOCK: usize = 256 * 1024;
/// How much is read from the socket at a time while examining.
const READ_CHUNK: usize = 16 * 1024;

enum Mode {
    /// Matching the client preface.
    Preface,
    /// Walking HTTP/2 frames.
    Frames,
    /// Passing everything through.
    Raw,
}

/// A client connection whose HTTP/2 request headers get a usable `:authority`.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    /// Bytes read from `inner` and not examined yet.
    pending: BytesMut,
    /// Examined bytes, waiting for the reader.
    ready: BytesMut,
    /// Payload bytes of the current frame that pass through unexamined.
    skip: usize,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            mode: Mode::Preface,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            skip: 0,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves examined bytes from `pending` to `ready`; false when more input is needed.
    fn examine(&mut self) -> bool {
        match self.mode {
            Mode::Raw => false,
            Mode::Preface => {
                let n = self.pending.len().min(PREFACE.len());
                if self.pending[..n] != PREFACE[..n] {
                    self.mode = Mode::Raw;
                    self.skip = 0;
                    self.ready = self.pending.split();
                    return true;
                }
                if n < PREFACE.len() {
                    return false;
                }
                self.ready = self.pending.split_to(PREFACE.len());
                self.mode = Mode::Frames;
                true
            }
            Mode::Frames => {
                if self.pending.len() < FRAME_HEADER {
                    return false;
                }
                let (len, kind, _) = frame_header(&self.pending);
                if kind != HEADERS {
                    self.ready = self.pending.split_to(FRAME_HEADER);
                    self.skip = len;
                    return true;
                }
                match header_block_end(&self.pending) {
                    BlockEnd::Incomplete => false,
                    BlockEnd::TooLarge => {
                        self.mode = Mode::Raw;
                        self.ready = self.pending.split();
                        true
                    }
                    BlockEnd::At(end) => {
                        let frames = self.pending.split_to(end);
                        self.ready = rewrite_frames(&frames).unwrap_or(frames);
                        true
                    }
                }
            }
        }
    }
}

fn frame_header(b: &[u8]) -> (usize, u8, u8) {
    let len = (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize;
    (len, b[3], b[4])
}

enum BlockEnd {
    Incomplete,
    TooLarge,
    At(usize),
}

/// Where the HEADERS frame at the start of `b` and its CONTINUATION frames end.
fn header_block_end(b: &[u8]) -> BlockEnd {
    let mut at = 0;
    loop {
        if at > MAX_BLOCK {
            return BlockEnd::TooLarge;
        }
        if b.len() < at + FRAME_HEADER {
            return BlockEnd::Incomplete;
        }
        let (len, kind, flags) = frame_header(&b[at..]);
        if at > 0 && kind != CONTINUATION {
            // A protocol error the HTTP/2 server will report; pass the frames on untouched.
            return BlockEnd::At(at);
        }
        at += FRAME_HEADER + len;
        if flags & END_HEADERS != 0 {
            return if at > MAX_BLOCK {
                BlockEnd::TooLarge
            } else if b.len() < at {
                BlockEnd::Incomplete
            } else {
                BlockEnd::At(at)
            };
        }
    }
}

/// The frames again with the header block repaired, or None when there is nothing to repair
/// (or the frames are malformed, which the HTTP/2 server reports itself).
fn rewrite_frames(frames: &[u8]) -> Option<BytesMut> {
    let (len, _, flags) = frame_header(frames);
    let stream = &frames[5..FRAME_HEADER];
    let mut payload = frames.get(FRAME_HEADER..FRAME_HEADER + len)?;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *payload.first()? as usize;
        payload = &payload[1..];
    }
    let mut priority: &[u8] = &[];
    if flags & PRIORITY != 0 {
        priority = payload.get(..5)?;
        payload = &payload[5..];
    }
    let mut block = payload.get(..payload.len().checked_sub(pad)?)?.to_vec();
    let mut at = FRAME_HEADER + len;
    while at < frames.len() {
        let (len, _, _) = frame_header(&frames[at..]);
        block.extend_from_slice(frames.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?);
        at += FRAME_HEADER + len;
    }
    let block = repair_block(&block)?;

    // One HEADERS frame (no padding) and as many CONTINUATIONs as the block needs.
    let mut out = BytesMut::with_capacity(block.len() + priority.len() + 2 * FRAME_HEADER);
    let mut rest: &[u8] = &block;
    let mut first = true;
    loop {
        let room = if first {
            SAFE_FRAME - priority.len()
        } else {
            SAFE_FRAME
        };
        let take = rest.len().min(room);
        let (chunk, tail) = rest.split_at(take);
        let len = chunk.len() + if first { priority.len() } else { 0 };
        let (kind, mut fl) = if first {
            (HEADERS, flags & !(PADDED | END_HEADERS))
        } else {
            (CONTINUATION, 0)
        };
        if tail.is_empty() {
            fl |= END_HEADERS;
        }
        out.put_uint(len as u64, 3);
        out.put_u8(kind);
        out.put_u8(fl);
        out.put_slice(stream);
        if first {
            out.put_slice(priority);
        }
        out.put_slice(chunk);
        rest = tail;
        first = false;
        if rest.is_empty() {
            return Some(out);
        }
    }
}

/// HPACK integer with an `n`-bit prefix at `b[at]`: (value, index after it).
fn read_int(b: &[u8], at: usize, n: u32) -> Option<(usize, usize)> {
    let mask = (1usize << n) - 1;
    let mut value = *b.get(at)? as usize & mask;
    let mut i = at + 1;
    if value < mask {
        return Some((value, i));
    }
    let mut shift = 0;
    loop {
        let byte = *b.get(i)?;
        i += 1;
        if shift > 28 {
            return None;
        }
        value += ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Some((value, i));
        }
    }
}

/// An HPACK string literal at `b[at]`: (Huffman coded?, its bytes, index after it).
fn read_string(b: &[u8], at: usize) -> Option<(bool, &[u8], usize)> {
    let huffman = *b.get(at)? & 0x80 != 0;
    let (len, start) = read_int(b, at, 7)?;
    let bytes = b.get(start..start.checked_add(len)?)?;
    Some((huffman, bytes, start + len))
}

fn decode_string(huffman: bool, bytes: &[u8]) -> Option<Vec<u8>> {
    if huffman {
        hpack::huffman::HuffmanDecoder::new().decode(bytes).ok()
    } else {
        Some(bytes.to_vec())
    }
}

/// Static table index of `:authority` (RFC 7541, appendix A).
const AUTHORITY_INDEX: usize = 1;

/// The header block with an invalid `:authority` literal replaced, or None if it has none.
fn repair_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b & 0x80 != 0 {
            // Indexed field: refers to an entry already repaired when it was a literal.
            i = read_int(block, i, 7)?.1;
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            i = read_int(block, i, 5)?.1;
            continue;
        }
        let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
        let (index, mut j) = read_int(block, i, prefix)?;
        let is_authority = if index == 0 {
            let (huffman, name, end) = read_string(block, j)?;
            j = end;
            // Ten bytes spell ":authority"; a Huffman coding of it is never longer.
            name.len() <= 10 && decode_string(huffman, name)?.as_slice() == b":authority"
        } else {
            index == AUTHORITY_INDEX
        };
        let (huffman, raw, end) = read_string(block, j)?;
        if is_authority {
            let value = decode_string(huffman, raw)?;
            if http::uri::Authority::try_from(value.as_slice()).is_ok() {
                return None;
            }
            let fixed = repair_authority(&value)?;
            let mut out = Vec::with_capacity(block.len() + fixed.len());
            out.extend_from_slice(&block[..j]);
            put_int(&mut out, 0x00, 7, fixed.len());
            out.extend_from_slice(&fixed);
            out.extend_from_slice(&block[end..]);
            return Some(out);
        }
        i = end;
    }
    None
}

/// A valid authority of the same length as `value`: the host and port after a scheme behind
/// filler user info, or, when that does not parse either, filler alone.
fn repair_authority(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() {
        return None;
    }
    let host = value
        .windows(3)
        .position(|w| w == b"://")
        .map(|p| &value[p + 3..])
        .filter(|h| !h.is_empty());
    if let Some(host) = host {
        let mut fixed = vec![b'-'; value.len() - host.len() - 1];
        fixed.push(b'@');
        fixed.extend_from_slice(host);
        if http::uri::Authority::try_from(fixed.as_slice()).is_ok() {
            return Some(fixed);
        }
    }
    Some(vec![b'a'; value.len()])
}

fn put_int(out: &mut Vec<u8>, first_bits: u8, n: u32, value: usize) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            let raw = matches!(this.mode, Mode::Raw);
            if raw || this.skip > 0 {
                if !this.pending.is_empty() {
                    let n = if raw {
                        this.pending.len()
                    } else {
                        this.skip.min(this.pending.len())
                    };
                    this.ready = this.pending.split_to(n);
                    if !raw {
                        this.skip -= n;
                    }
                    continue;
                }
                if this.eof {
                    return Poll::Ready(Ok(()));
                }
                // Unexamined bytes go straight into the reader's buffer; whatever comes
                // after the current frame is taken back for examination.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                let n = buf.filled().len() - before;
                if n == 0 {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                if !raw {
                    let keep = n.min(this.skip);
                    this.skip -= keep;
                    if keep < n {
                        this.pending
                            .extend_from_slice(&buf.filled()[before + keep..before + n]);
                        buf.set_filled(before + keep);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if this.examine() {
                continue;
            }
            if this.eof {
                // A truncated frame: hand it over; the HTTP/2 server reports it.
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready = this.pending.split();
                continue;
            }
            this.pending.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.pending
            ))?;
            if n == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.put_uint(payload.len() as u64, 3);
        f.put_u8(kind);
        f.put_u8(flags);
        f.put_u32(stream);
        f.extend_from_slice(payload);
        f
    }

    /// A header block: `:method GET` (indexed), `:authority` literal with indexing
    /// (static name), `:path /kv` without indexing.
    fn block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x82, 0x41];
        put_int(&mut b, 0, 7, authority.len());
        b.extend_from_slice(authority);
        b.extend_from_slice(&[0x04, 0x03]);
        b.extend_from_slice(b"/kv");
        b
    }

    async fn pass(input: Vec<u8>, chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in input.chunks(chunk) {
                client.write_all(c).await.unwrap();
            }
        });
        let mut fix = AuthorityFix::new(server);
        let mut out = Vec::new();
        let mut buf = vec![0; 7];
        loop {
            let n = fix.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() > 1 << 20 {
                break;
            }
        }
        writer.await.unwrap();
        out
    }

    fn connection(blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut c = PREFACE.to_vec();
        c.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        for (i, b) in blocks.iter().enumerate() {
            let stream = 1 + 2 * i as u32;
            c.extend(frame(HEADERS, END_HEADERS, stream, b));
            c.extend(frame(0x0, 0x1, stream, &[7u8; 40])); // DATA, END_STREAM
        }
        c
    }

    #[tokio::test]
    async fn scheme_in_authority_is_replaced_by_same_length_user_info() {
        let input = connection(&[block(b"http://127.0.0.1:2379"), block(b"10.0.0.1:2379")]);
        for chunk in [1, 5, 64, 4096] {
            let out = pass(input.clone(), chunk).await;
            let expected = connection(&[block(b"------@127.0.0.1:2379"), block(b"10.0.0.1:2379")]);
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn valid_connections_and_http1_pass_unchanged() {
        // RFC 7541 C.4.1: `:authority: www.example.com`, Huffman coded.
        let huffman = vec![
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        assert_eq!(repair_block(&huffman), None);
        let input = connection(&[huffman, block(b"localhost:2379")]);
        assert_eq!(pass(input.clone(), 3).await, input);
        let http1 = b"GET /health HTTP/1.1\r\nhost: http://x\r\n\r\n".to_vec();
        assert_eq!(pass(http1.clone(), 4).await, http1);
    }

    #[test]
    fn padded_split_block_becomes_one_unpadded_frame() {
        let b = block(b"https://node-1.example:2379");
        let (head, tail) = b.split_at(4);
        let mut padded = vec![3u8];
        padded.extend_from_slice(head);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut frames = frame(HEADERS, PADDED | 0x1, 5, &padded);
        frames.extend(frame(CONTINUATION, END_HEADERS, 5, tail));
        let out = rewrite_frames(&frames).expect("repaired");
        assert_eq!(
            out.to_vec(),
            frame(
                HEADERS,
                END_HEADERS | 0x1,
                5,
                &block(b"-------@node-1.example:2379")
            )
        );
    }

    #[test]
    fn repairs_keep_the_length_and_parse() {
        for bad in [
            &b"http://a:1"[..],
            b"unix:///var/run/x.sock",
            b"http://h:2379/path",
            b"::",
        ] {
            let fixed = repair_authority(bad).unwrap();
            assert_eq!(fixed.len(), bad.len());
            http::uri::Authority::try_from(fixed.as_slice()).unwrap();
        }
    }

    #[test]
    fn malformed_blocks_are_left_to_the_server() {
        assert_eq!(repair_block(&[0x41, 0x85, b'a']), None);
        assert_eq!(repair_block(&[0x7f]), None);
        assert!(rewrite_frames(&frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 1])).is_none());
    }
}
