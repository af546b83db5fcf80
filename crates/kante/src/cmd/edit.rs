//! `… edit` commands: YAML from stdin when it is piped, else `$EDITOR`,
//! reopened with the server's complaint on top until it is accepted (as lxc).

use std::future::Future;
use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

/// Marks the error lines we add, so the next round replaces them.
const ERROR_PREFIX: &str = "### Error: ";

pub fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("Failed to read from stdin")?;
    Ok(s)
}

/// `text` with our previous error lines removed and `error` put on top.
pub fn with_error_comment(text: &str, error: &str) -> String {
    let body: Vec<&str> = text
        .lines()
        .skip_while(|l| l.starts_with(ERROR_PREFIX))
        .collect();
    let mut out = String::new();
    for line in error.lines() {
        out.push_str(ERROR_PREFIX);
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&body.join("\n"));
    out.push('\n');
    out
}

/// The editor lxc would pick: `$VISUAL`, `$EDITOR`, else `vi`.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Removes the temporary file however the edit ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Lets the user edit `text` and returns the result.
pub fn run_editor(text: &str) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path =
        std::env::temp_dir().join(format!("kante_editor_{}_{nanos}.yaml", std::process::id()));
    // 0600 and create_new: the file may hold config secrets, and must be ours.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    let tmp = TempFile(path);
    f.write_all(text.as_bytes())?;
    drop(f);
    // Through sh, so an $EDITOR with arguments ("code --wait") works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} \"$1\"", editor()))
        .arg("sh")
        .arg(&tmp.0)
        .status()
        .context("Failed to start the editor")?;
    if !status.success() {
        bail!("The editor exited with {status}");
    }
    Ok(std::fs::read_to_string(&tmp.0)?)
}

/// The comment lxc puts above the document it opens in the editor.
pub fn header(what: &str) -> String {
    format!(
        "### This is a YAML representation of the {what}.\n\
         ### Any line starting with a '#' will be ignored.\n\
         ###\n\
         ### Read-only fields (name, used_by, status, ...) are shown but not changed.\n"
    )
}

/// Parses and applies an edited YAML document about `what` ("profile").
/// Piped stdin gets one try; in a terminal, a refused document is reopened
/// with the error on top.
pub async fn edit<T, F, Fut>(what: &str, current: &str, mut apply: F) -> Result<()>
where
    T: DeserializeOwned,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if !std::io::stdin().is_terminal() {
        let text = read_stdin()?;
        let new: T = serde_yaml::from_str(&text).context("Invalid YAML")?;
        return apply(new).await;
    }
    let mut text = format!("{}{current}", header(what));
    loop {
        text = run_editor(&text)?;
        let error = match serde_yaml::from_str::<T>(&text) {
            Ok(new) => match apply(new).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("Config parsing error: {}", crate::one_line(&e)),
            },
            Err(e) => format!("Config parsing error: {e}"),
        };
        eprintln!("{error}");
        eprintln!("Press enter to open the editor again or ctrl+c to abort change");
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("{}", error.replace('\n', " "));
        }
        text = with_error_comment(&text, &error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_comments_replace_the_previous_ones() {
        let first = with_error_comment("config: {}\n", "Config parsing error: bad key");
        assert_eq!(
            first,
            "### Error: Config parsing error: bad key\nconfig: {}\n"
        );
        let second = with_error_comment(&first, "other\nline");
        assert_eq!(second, "### Error: other\n### Error: line\nconfig: {}\n");
        // The comment does not disturb the YAML.
        let v: serde_yaml::Value = serde_yaml::from_str(&second).unwrap();
        assert!(v["config"].is_mapping());
        let with_header = format!("{}{second}", header("profile"));
        let v: serde_yaml::Value = serde_yaml::from_str(&with_header).unwrap();
        assert!(v["config"].is_mapping());
        assert!(with_header.starts_with("### This is a YAML representation of the profile.\n"));
    }
}
