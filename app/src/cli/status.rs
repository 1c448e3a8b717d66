//! `lanspread status`: asks the peer running on the data folder for its state.

use lanspread_core::store::resolve_data_dir;
use lanspread_net::Request;
use lanspread_net::control;

use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the running peer's JSON answer.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let data_dir = resolve_data_dir(global.data.as_deref());
    let report = control::request(&data_dir, Request::Status)?.into_status()?;
    if args.json {
        return super::emit(&(serde_json::to_string_pretty(&report)? + "\n"));
    }
    let mut out = format!(
        "{} ({}) listening on {}\n",
        report.name,
        report.peer_id,
        report
            .addr
            .map_or_else(|| "-".to_owned(), |a| a.to_string())
    );
    out.push_str(&format!(
        "sharing: {}\n",
        report
            .sharing
            .words()
            .unwrap_or_else(|| "no upload limit".to_owned())
    ));
    if !report.running.is_empty() {
        out.push_str(&format!("running: {}\n", report.running.join(", ")));
    }
    out.push('\n');
    let peers: Vec<Vec<String>> = report
        .peers
        .iter()
        .map(|p| vec![p.name.clone(), p.addr.to_string(), p.games.to_string()])
        .collect();
    out.push_str(&super::format_table(&["PEER", "ADDRESS", "GAMES"], &peers));
    out.push('\n');
    let games: Vec<Vec<String>> = report
        .games
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                if g.shared { "yes" } else { "no" }.to_owned(),
                g.outbound.to_string(),
                if g.active {
                    "update/remove running"
                } else {
                    ""
                }
                .to_owned(),
            ]
        })
        .collect();
    out.push_str(&super::format_table(
        &["GAME", "SHARED", "UPLOADS", "OPERATION"],
        &games,
    ));
    super::emit(&out)
}
