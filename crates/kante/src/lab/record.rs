//! The lab record, `<dir>/lab.json`: what the lab is and everything `up`
//! made, each item written down *before* it is made, so `down` removes it
//! even after a crash half-way through `up`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "lab.json";

/// One thing made by `up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A link in the caller's namespace (the uplink bridge, a veth's root end).
    Link { name: String },
    /// A named network namespace (`/run/netns/NAME`).
    Netns { name: String },
    /// Host `host`'s kanted: its `KANTE_DIR`, and its pid once started
    /// (with the start time, so a reused pid is never signalled).
    Daemon {
        host: u32,
        state: PathBuf,
        #[serde(default)]
        pid: Option<i32>,
        #[serde(default)]
        start_time: Option<u64>,
    },
    /// A remote added to the client configuration in `conf`.
    Remote { conf: PathBuf, name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub hosts: u32,
    pub subnet: String,
    pub bridge_range: String,
    pub items: Vec<Item>,
    /// Where it is saved (the lab's directory).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Record {
    pub fn new(name: &str, dir: &Path, hosts: u32, subnet: String, bridge_range: String) -> Record {
        Record {
            name: name.into(),
            hosts,
            subnet,
            bridge_range,
            items: Vec::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// The record in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Record>> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context(format!("Failed to read {}", path.display())),
        };
        let mut r: Record = serde_json::from_str(&text)
            .with_context(|| format!("Invalid lab record {}", path.display()))?;
        r.dir = dir.to_path_buf();
        Ok(Some(r))
    }

    /// Writes the record (a temporary file, synced, renamed over it).
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(".lab.json.tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("Failed to write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("Failed to write {}", path.display()))
    }

    /// Records `item` (saved before the caller makes it).
    pub fn add(&mut self, item: Item) -> Result<()> {
        self.items.push(item);
        self.save()
    }

    /// Records host `host`'s daemon pid once it runs.
    pub fn set_pid(&mut self, host: u32, pid: i32, start: Option<u64>) -> Result<()> {
        for item in &mut self.items {
            if let Item::Daemon {
                host: h,
                pid: p,
                start_time,
                ..
            } = item
            {
                if *h == host {
                    *p = Some(pid);
                    *start_time = start;
                }
            }
        }
        self.save()
    }

    /// Host `host`'s daemon item: its state dir, pid and start time.
    pub fn daemon(&self, host: u32) -> Option<(PathBuf, Option<i32>, Option<u64>)> {
        self.items.iter().find_map(|i| match i {
            Item::Daemon {
                host: h,
                state,
                pid,
                start_time,
            } if *h == host => Some((state.clone(), *pid, *start_time)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_saved_at_each_step_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(Record::load(dir).unwrap().is_none());
        let mut r = Record::new("lt", dir, 2, "10.1.0.0/24".into(), "10.2.0.0/16".into());
        r.add(Item::Link {
            name: "klt-up".into(),
        })
        .unwrap();
        // Written before the thing is made: on disk already.
        let back = Record::load(dir).unwrap().unwrap();
        assert_eq!(
            back.items,
            vec![Item::Link {
                name: "klt-up".into()
            }]
        );
        r.add(Item::Daemon {
            host: 1,
            state: dir.join("h1/state"),
            pid: None,
            start_time: None,
        })
        .unwrap();
        assert_eq!(r.daemon(1), Some((dir.join("h1/state"), None, None)));
        r.set_pid(1, 4242, Some(77)).unwrap();
        let back = Record::load(dir).unwrap().unwrap();
        assert_eq!(
            back.daemon(1),
            Some((dir.join("h1/state"), Some(4242), Some(77)))
        );
        assert_eq!(back.daemon(2), None);
        assert_eq!(back, r);
        assert!(!dir.join(".lab.json.tmp").exists());
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(text.contains("\"kind\": \"daemon\""), "{text}");
        std::fs::write(dir.join(FILE), "{").unwrap();
        assert!(Record::load(dir).is_err());
    }
}
