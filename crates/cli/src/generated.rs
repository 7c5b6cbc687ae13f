//! `polyrepl completions SHELL` and `polyrepl man`: generated from the clap definitions, so they can
//! never disagree with `--help`.

use clap::Command;
use std::io::Write;
use std::process::ExitCode;

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell, mut cmd: Command) -> ExitCode {
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics on a failed write, e.g. a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    let _ = std::io::stdout().write_all(&script);
    ExitCode::SUCCESS
}

/// The man page, on stdout.
pub fn man(cmd: Command) -> ExitCode {
    match page(cmd) {
        Ok(text) => {
            // A closed pipe (`polyrepl man | head`) is not worth an error message.
            let _ = std::io::stdout().write_all(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot render the man page: {e}");
            ExitCode::from(2)
        }
    }
}

/// One page: the top-level page as clap_mangen renders it, then a section per subcommand (and
/// sub-subcommand) with its synopsis, description and options, so `man polyrepl` documents every
/// flag of every command in one place.
fn page(cmd: Command) -> std::io::Result<Vec<u8>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    // (command, the ids of the global flags its parent's section already lists)
    let mut stack: Vec<(Command, Vec<clap::Id>)> = children(&cmd);
    while let Some((mut sub, inherited)) = stack.pop() {
        for id in &inherited {
            sub = sub.mut_arg(id, |a| a.hide(true));
        }
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut part)?;
        }
        let title = sub.get_bin_name().unwrap_or(sub.get_name()).to_uppercase();
        writeln!(out, ".SH \"{title}\"")?;
        // Inside the command's section its own sections become subsections; the roff preamble (a
        // string definition) is already at the top of the page.
        for line in String::from_utf8_lossy(&part).lines() {
            if line.starts_with(".ie ") || line.starts_with(".el ") {
                continue;
            }
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(out, ".SS {heading}")?,
                None => writeln!(out, "{line}")?,
            }
        }
        stack.extend(children(&sub));
    }
    Ok(out)
}

/// The subcommands of `cmd`, last first (for a stack), each with the global flags `cmd` documents:
/// clap copies those into every subcommand, and one listing is enough.
fn children(cmd: &Command) -> Vec<(Command, Vec<clap::Id>)> {
    let globals: Vec<clap::Id> =
        cmd.get_arguments().filter(|a| a.is_global_set()).map(|a| a.get_id().clone()).collect();
    let mut subs: Vec<_> = cmd.get_subcommands().map(|sub| (sub.clone(), globals.clone())).collect();
    subs.reverse();
    subs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_a_section_per_command_and_their_options() {
        let cmd = Command::new("tool")
            .version("1")
            .subcommand(Command::new("go").about("Go somewhere").arg(clap::arg!(--fast "Quickly")))
            .arg(clap::arg!(--loud "Globally loud").global(true))
            .subcommand(Command::new("stack").subcommand(Command::new("up").about("Start it")));
        let text = String::from_utf8(page(cmd).unwrap()).unwrap();
        assert!(text.contains(".TH tool 1"), "{text}");
        for needle in [".SH \"TOOL GO\"", "Go somewhere", "\\-\\-fast", ".SH \"TOOL STACK UP\"", "Start it"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(text.matches(".ie ").count(), 1, "{text}");
        assert_eq!(text.matches("\\-\\-loud").count(), 2, "in the top synopsis and options only: {text}");
        assert!(text.find("TOOL GO").unwrap() < text.find("TOOL STACK UP").unwrap());
    }
}
