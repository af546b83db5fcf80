//! `kante init --interactive`: the questions `lxd init` asks, answered on
//! stdin (a terminal or a pipe), turned into a preseed that is applied as a
//! whole like `--preseed`, and printed on request.

use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use serde_json::json;

/// Reads answers line by line; an empty answer takes the default.
pub struct Asker<R, W> {
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Asker<R, W> {
    pub fn new(input: R, out: W) -> Self {
        Asker { input, out }
    }

    fn ask(&mut self, question: &str, default: &str) -> Result<String> {
        write!(self.out, "{question} [default={default}]: ")?;
        self.out.flush()?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            bail!("stdin closed before every question was answered");
        }
        let answer = line.trim();
        Ok(if answer.is_empty() { default } else { answer }.to_string())
    }

    fn ask_bool(&mut self, question: &str, default: bool) -> Result<bool> {
        loop {
            let a = self.ask(
                &format!("{question} (yes/no)"),
                if default { "yes" } else { "no" },
            )?;
            match a.to_ascii_lowercase().as_str() {
                "yes" | "y" => return Ok(true),
                "no" | "n" => return Ok(false),
                _ => writeln!(self.out, "Please answer yes or no")?,
            }
        }
    }

    fn ask_choice(&mut self, question: &str, choices: &[&str], default: &str) -> Result<String> {
        loop {
            let a = self.ask(&format!("{question} ({})", choices.join(", ")), default)?;
            if choices.contains(&a.as_str()) {
                return Ok(a);
            }
            writeln!(self.out, "Invalid input, try again.")?;
        }
    }

    /// Asks everything and returns the preseed (YAML) and whether to print it.
    pub fn preseed(&mut self) -> Result<(String, bool)> {
        let mut seed = json!({"config": {}, "cluster": null, "networks": [], "storage_pools": [], "profiles": []});
        let mut devices = json!({});
        if self.ask_bool("Do you want to configure a new storage pool?", true)? {
            let name = self.ask("Name of the new storage pool", "default")?;
            let driver = self.ask_choice(
                "Name of the storage backend to use",
                &["btrfs", "dir"],
                "dir",
            )?;
            let mut config = json!({});
            if driver == "btrfs" {
                if self.ask_bool("Would you like to use an existing empty block device (e.g. a disk or partition)?", false)? {
                    config["source"] = json!(self.ask("Path to the existing block device", "")?);
                } else {
                    config["size"] = json!(self.ask("Size in GiB of the new loop device (1GiB minimum)", "30GiB")?);
                }
            }
            seed["storage_pools"] = json!([{"name": name, "driver": driver, "config": config}]);
            devices["root"] = json!({"type": "disk", "path": "/", "pool": name});
        }
        if self.ask_bool("Would you like to create a new local network bridge?", true)? {
            let name = self.ask("What should the new bridge be called?", "kantebr0")?;
            let v4 = self.ask(
                "What IPv4 address should be used? (CIDR subnet notation, \"auto\" or \"none\")",
                "auto",
            )?;
            let v6 = self.ask(
                "What IPv6 address should be used? (CIDR subnet notation, \"auto\" or \"none\")",
                "auto",
            )?;
            let mut config = json!({"ipv4.address": v4, "ipv6.address": v6});
            if v4 != "none" {
                config["ipv4.nat"] = json!("true");
            }
            if v6 != "none" {
                config["ipv6.nat"] = json!("true");
            }
            seed["networks"] = json!([{"name": name, "type": "bridge", "config": config}]);
            devices["eth0"] = json!({"type": "nic", "name": "eth0", "network": name});
        } else if self.ask_bool(
            "Would you like to configure Kante to use an existing bridge or host interface?",
            false,
        )? {
            let parent = self.ask("Name of the existing bridge or host interface", "")?;
            devices["eth0"] =
                json!({"type": "nic", "name": "eth0", "nictype": "bridged", "parent": parent});
        }
        seed["profiles"] = json!([{"name": "default", "description": "Default Kante profile", "config": {}, "devices": devices}]);
        let print = self.ask_bool(
            "Would you like a YAML \"kante init\" preseed to be printed?",
            false,
        )?;
        Ok((serde_yaml::to_string(&seed)?, print))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(text: &str) -> (String, bool) {
        let mut out = Vec::new();
        Asker::new(text.as_bytes(), &mut out)
            .preseed()
            .expect("answers")
    }

    #[test]
    fn defaults_give_a_dir_pool_a_nat_bridge_and_eth0() {
        let (yaml, print) = answers("\n\n\n\n\n\n\n\n\n");
        let seed: kante_site::preseed::Preseed = serde_yaml::from_str(&yaml).expect("a preseed");
        assert!(!print);
        assert_eq!(seed.storage_pools[0].driver, "dir");
        assert_eq!(seed.networks[0].name, "kantebr0");
        assert_eq!(seed.networks[0].config["ipv4.nat"], "true");
        let devs = &seed.profiles[0].put.devices;
        assert_eq!(devs["eth0"]["network"], "kantebr0");
        assert_eq!(devs["root"]["pool"], "default");
    }

    #[test]
    fn btrfs_on_a_loop_file_no_network_and_a_reprompt() {
        let (yaml, print) = answers("yes\nfast\nzfs\nbtrfs\nno\n20GiB\nno\nmaybe\nno\nyes\n");
        let seed: kante_site::preseed::Preseed = serde_yaml::from_str(&yaml).expect("a preseed");
        assert!(print);
        assert_eq!(seed.storage_pools[0].name, "fast");
        assert_eq!(seed.storage_pools[0].config["size"], "20GiB");
        assert!(seed.networks.is_empty());
        assert!(!seed.profiles[0].put.devices.contains_key("eth0"));
    }

    #[test]
    fn running_out_of_answers_is_an_error() {
        let mut out = Vec::new();
        assert!(Asker::new("yes\n".as_bytes(), &mut out).preseed().is_err());
    }
}
