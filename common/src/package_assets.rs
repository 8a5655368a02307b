//! Man pages and shell completions, generated from a binary's own clap
//! definitions so they can never drift from its `--help`.
//!
//! Each binary has a hidden `generate-package-assets --out DIR` command
//! that calls [`write()`]; `scripts/package.sh` runs it on the binaries it is
//! about to package, so building the packages needs no tool beyond the
//! binaries themselves (no second build of the command-line definitions, no
//! `build.rs` running at every compile).

use std::fs;
use std::io;
use std::path::Path;

use clap_complete::Shell;

/// The shells completions are written for, with the file name and the
/// directory (under `DIR/completions/`) each one's loader looks in, as
/// Debian's bash-completion, zsh and fish packages expect them:
/// `/usr/share/bash-completion/completions/NAME`,
/// `/usr/share/zsh/vendor-completions/_NAME`,
/// `/usr/share/fish/vendor_completions.d/NAME.fish`.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

/// The hidden subcommand's name, the same in every Sallyport binary.
pub const COMMAND: &str = "generate-package-assets";

/// Writes `out/man/NAME.1` and one page per visible subcommand
/// (`NAME-SUB.1`, roff, uncompressed) and `out/completions/{bash,zsh,fish}/`
/// for the command `cmd` (its name is the binary's). Hidden subcommands,
/// this one among them, are left out of both.
pub fn write(cmd: clap::Command, out: &Path) -> io::Result<()> {
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let name = cmd.get_name().to_owned();
    // clap_complete offers hidden subcommands too: leave them out first.
    let mut visible = without_hidden_subcommands(&cmd);
    for (shell, dir) in SHELLS {
        let dir = out.join("completions").join(dir);
        fs::create_dir_all(&dir)?;
        clap_complete::generate_to(shell, &mut visible, &name, &dir)?;
    }
    Ok(())
}

/// `cmd` as completions see it: its name, version, about, arguments and
/// (recursively) its subcommands that are not hidden.
fn without_hidden_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().cloned())
        .subcommand_required(cmd.is_subcommand_required_set());
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_owned());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(without_hidden_subcommands(sub));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_visible_command_and_three_completions() {
        let cmd = clap::Command::new("demo")
            .version("1.0")
            .about("A demo")
            .subcommand(clap::Command::new("run").about("Runs"))
            .subcommand(clap::Command::new(COMMAND).hide(true));
        let dir = tempfile::tempdir().unwrap();
        write(cmd, dir.path()).unwrap();
        let page = fs::read_to_string(dir.path().join("man/demo.1")).unwrap();
        assert!(page.contains(".TH demo 1"), "{page}");
        assert!(dir.path().join("man/demo-run.1").exists());
        assert!(!dir.path().join(format!("man/demo-{COMMAND}.1")).exists());
        for file in ["bash/demo.bash", "zsh/_demo", "fish/demo.fish"] {
            let text = fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
            assert!(text.contains("run"), "{file}: {text}");
            assert!(!text.contains(COMMAND), "{file} offers the hidden command");
        }
    }
}
