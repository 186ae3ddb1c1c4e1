//! The forwarder's flow log writer: one thread that appends closed records to their files, a
//! header line of field names first in a new (or empty) file, as in files delivered to S3.
//! The data plane never waits for it: records come through a bounded queue ([`super::QUEUE`]).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::format::header;
use super::{Msg, Record, QUEUE};

/// The writer thread and the way to it.
#[derive(Debug)]
pub struct Writer {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Writer> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let thread = std::thread::Builder::new().name("flow-logs".into()).spawn(move || run(&rx))?;
        Ok(Writer { tx, thread: Some(thread) })
    }

    /// Where the data plane sends records.
    pub fn sender(&self) -> Sender<Msg> {
        self.tx.clone()
    }

    /// Writes everything queued so far, then ends the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Open destination files, and the ones that failed (reported once).
#[derive(Default)]
struct Files {
    open: HashMap<PathBuf, BufWriter<File>>,
    failed: HashSet<PathBuf>,
}

impl Files {
    fn get(&mut self, path: &Path, fields_header: impl FnOnce() -> String) -> Option<&mut BufWriter<File>> {
        if !self.open.contains_key(path) {
            match open(path, fields_header) {
                Ok(f) => {
                    self.failed.remove(path);
                    self.open.insert(path.to_path_buf(), f);
                }
                Err(e) => {
                    if self.failed.insert(path.to_path_buf()) {
                        crate::log!("flow log file {}: {e}", path.display());
                    }
                    return None;
                }
            }
        }
        self.open.get_mut(path)
    }
}

/// Opens a destination for appending; a new or empty file gets the header line.
fn open(path: &Path, fields_header: impl FnOnce() -> String) -> std::io::Result<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let empty = f.metadata()?.len() == 0;
    let mut w = BufWriter::new(f);
    if empty {
        writeln!(w, "{}", fields_header())?;
    }
    Ok(w)
}

fn run(rx: &Receiver<Msg>) {
    let mut files = Files::default();
    for msg in rx {
        match msg {
            Msg::Batch(records) => write_batch(&mut files, &records),
            Msg::Stop => break,
        }
    }
    for (path, mut f) in files.open.drain() {
        if let Err(e) = f.flush() {
            crate::log!("flow log file {}: {e}", path.display());
        }
    }
}

fn write_batch(files: &mut Files, records: &[Record]) {
    let mut touched: Vec<&Path> = Vec::new();
    for r in records {
        let spec = &r.spec;
        let ok = match files.get(&spec.path, || header(&spec.fields)) {
            Some(f) => writeln!(f, "{}", r.line()).is_ok(),
            None => false,
        };
        if ok {
            spec.written.fetch_add(1, Ordering::Relaxed);
            if !touched.contains(&spec.path.as_path()) {
                touched.push(&spec.path);
            }
        } else {
            spec.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Whole intervals reach the file together: readers never see half a batch for long.
    for p in touched {
        if let Some(f) = files.open.get_mut(p) {
            if let Err(e) = f.flush() {
                crate::log!("flow log file {}: {e}", p.display());
                files.open.remove(p);
            }
        }
    }
}
