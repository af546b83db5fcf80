//! Adapter to the image builders of `kante-images`, with progress display.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kante_images::{recipe_for, BuildEvent, Recipe};

/// Where built tarballs go unless `--output` says otherwise.
pub const IMAGE_CACHE: &str = "/var/cache/kante/images";
/// Downloads kept between builds (Debian packages).
pub const BUILD_CACHE: &str = "/var/cache/kante/build";

/// Where a recipe's tarball is cached: one file per recipe, whatever name
/// the user gave it (`debian/12` and `debian/bookworm` share one build).
pub fn default_output(recipe: &Recipe) -> PathBuf {
    Path::new(IMAGE_CACHE).join(recipe.file_name())
}

/// Shows one spinner (or bar, once progress is known) per build phase.
struct BuildUi {
    multi: MultiProgress,
    current: Option<(String, ProgressBar)>,
    verbose: bool,
    /// No terminal for the bars: name each phase on a plain line instead.
    plain: bool,
}

impl BuildUi {
    fn finish_current(&mut self) {
        if let Some((phase, pb)) = self.current.take() {
            pb.set_style(
                ProgressStyle::with_template("  {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.finish_with_message(format!("{phase}: done"));
        }
    }

    fn event(&mut self, ev: BuildEvent) {
        match ev {
            BuildEvent::Phase(phase) => {
                self.finish_current();
                if self.plain {
                    println!("Build step: {phase}");
                }
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.enable_steady_tick(Duration::from_millis(120));
                pb.set_message(phase.clone());
                self.current = Some((phase, pb));
            }
            BuildEvent::Progress { done, total } => {
                if let Some((_, pb)) = &self.current {
                    if total > 0 && pb.length().is_none() {
                        pb.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                    }
                    pb.set_length(total);
                    pb.set_position(done);
                }
            }
            BuildEvent::Log(line) => {
                if self.verbose && self.plain {
                    println!("{line}");
                } else if self.verbose {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}

/// Builds the named recipe (blocking; run it off the async threads).
pub fn build_image(name: &str, output: Option<PathBuf>, verbose: bool) -> Result<PathBuf> {
    let recipe = recipe_for(name)?;
    let out = output.unwrap_or_else(|| default_output(&recipe));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
    }
    std::fs::create_dir_all(BUILD_CACHE)
        .with_context(|| format!("Failed to create {BUILD_CACHE}"))?;
    let plain = !std::io::stderr().is_terminal();
    let mut ui = BuildUi {
        multi: MultiProgress::new(),
        current: None,
        verbose,
        plain,
    };
    let result = recipe.build(&out, Path::new(BUILD_CACHE), &mut |ev| ui.event(ev));
    ui.finish_current();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_names() {
        let out = |n: &str| default_output(&recipe_for(n).unwrap());
        let host = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!(
            out("debian/12"),
            PathBuf::from(format!(
                "/var/cache/kante/images/debian-bookworm-{host}.tar.zst"
            ))
        );
        assert_eq!(out("debian/12"), out("debian/bookworm"));
        assert_eq!(
            out("busybox"),
            PathBuf::from(format!("/var/cache/kante/images/busybox-{host}.tar.zst"))
        );
    }
}
