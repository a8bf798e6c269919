//! What openraft carries as a snapshot's data, kept out of memory.
//!
//! The state machine is durable on its own (redb), so the snapshot a member builds for itself
//! — which openraft asks for only to purge the log before it — copies nothing: it is a durable
//! commit and the log id it covers. A full image of the store is written only when a follower
//! needs one, and then into an unlinked temporary file that is streamed from and to disk in
//! chunks, so a member's memory does not grow with the size of its data.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use cairn_mvcc::{Mvcc, SnapshotInfo};

/// A snapshot's data.
#[derive(Debug)]
pub enum SnapshotData {
    /// The state machine's own durable state at the snapshot's log id: what a member builds
    /// for itself. It cannot be sent or installed; a member sending a snapshot makes an
    /// [`SnapshotData::Image`].
    InPlace,
    /// A full image of the store (cairn-mvcc's snapshot format) in a temporary file.
    Image(ImageFile),
}

/// An image in an unlinked temporary file (gone with the process, even after kill -9).
#[derive(Debug)]
pub struct ImageFile {
    file: File,
    len: u64,
}

impl ImageFile {
    /// Writes a consistent image of `mvcc` into a new temporary file in `dir`.
    pub fn write(mvcc: &Mvcc, dir: &Path) -> io::Result<(ImageFile, SnapshotInfo)> {
        let mut file = tempfile::tempfile_in(dir)?;
        let info = mvcc
            .write_snapshot(&mut file)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let len = file.stream_position()?;
        file.rewind()?;
        Ok((ImageFile { file, len }, info))
    }

    /// An empty image in a new temporary file in `dir`, to receive one with [`Self::append`].
    pub fn receive(dir: &Path) -> io::Result<ImageFile> {
        Ok(ImageFile {
            file: tempfile::tempfile_in(dir)?,
            len: 0,
        })
    }

    /// Appends received bytes.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The image's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader from the image's first byte.
    pub fn into_reader(mut self) -> io::Result<BufReader<File>> {
        self.file.seek(SeekFrom::Start(0))?;
        Ok(BufReader::with_capacity(1 << 20, self.file))
    }

    /// The image as an async reader from its first byte.
    pub fn into_async_reader(mut self) -> io::Result<tokio::fs::File> {
        self.file.seek(SeekFrom::Start(0))?;
        Ok(tokio::fs::File::from_std(self.file))
    }
}

/// Reads up to `buf.len()` bytes, short only at the end of the input.
pub async fn read_full<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
