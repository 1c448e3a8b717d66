//! Which peers agree: the majority vote over manifests of one game version.
//!
//! Every file's size and hashes are decided by a strict majority of the
//! manifests offered; a path is in the result when a strict majority lists
//! it. A peer is used only when its manifest is exactly the majority's; the
//! others are rejected with a reason the user can read. A single manifest is
//! taken as it is.

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::manifest::{Blake3Hash, FileEntry, Manifest};
use crate::paths::RelPath;

/// The outcome of a vote.
#[derive(Debug, Clone)]
pub struct Vote<K> {
    pub manifest: Manifest,
    /// Peers whose manifest is the majority's.
    pub agreeing: Vec<K>,
    /// Peers not used, and why.
    pub rejected: Vec<(K, String)>,
}

/// Why no manifest could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("no peer sent a manifest")]
    NoManifests,
    #[error("the peers disagree about {what} and no majority decides it: {detail}")]
    NoMajority { what: String, detail: String },
}

/// What one file must be, for the vote: size and chunk list.
type FileKey = (u64, Blake3Hash);

fn file_key(entry: &FileEntry) -> FileKey {
    (entry.len_bytes, entry.content_id())
}

/// Picks the majority manifest among `candidates` (peer key, manifest).
pub fn majority_manifest<K: Clone + Display>(
    candidates: Vec<(K, Manifest)>,
) -> Result<Vote<K>, VoteError> {
    let n = candidates.len();
    if n == 0 {
        return Err(VoteError::NoManifests);
    }
    if n == 1 {
        let (key, manifest) = candidates
            .into_iter()
            .next()
            .ok_or(VoteError::NoManifests)?;
        return Ok(Vote {
            manifest,
            agreeing: vec![key],
            rejected: Vec::new(),
        });
    }
    let strict = |count: usize| count * 2 > n;

    // path -> variant -> (votes, an entry with that variant)
    let mut files: BTreeMap<&RelPath, BTreeMap<FileKey, (usize, &FileEntry)>> = BTreeMap::new();
    for (_, m) in &candidates {
        for entry in &m.files {
            let variants = files.entry(&entry.path).or_default();
            variants.entry(file_key(entry)).or_insert((0, entry)).0 += 1;
        }
    }
    let mut chosen = Vec::new();
    for (path, variants) in &files {
        let listed: usize = variants.values().map(|(count, _)| count).sum();
        if !strict(listed) {
            if listed * 2 == n {
                return Err(VoteError::NoMajority {
                    what: path.to_string(),
                    detail: format!("{listed} of {n} peers have this file"),
                });
            }
            continue; // a minority's extra file
        }
        match variants.values().find(|(count, _)| strict(*count)) {
            Some((_, entry)) => chosen.push((*entry).clone()),
            None => {
                return Err(VoteError::NoMajority {
                    what: path.to_string(),
                    detail: format!(
                        "{} different versions of it among {n} peers",
                        variants.len()
                    ),
                });
            }
        }
    }
    let template = &candidates[0].1;
    let manifest = Manifest {
        game: template.game.clone(),
        version: template.version.clone(),
        files: chosen,
    };
    let mut agreeing = Vec::new();
    let mut rejected = Vec::new();
    for (key, m) in candidates {
        match disagreement(&manifest, &m) {
            None => agreeing.push(key),
            Some(reason) => rejected.push((key, reason)),
        }
    }
    if agreeing.is_empty() {
        return Err(VoteError::NoMajority {
            what: "the whole game".into(),
            detail: "no single peer has the majority's files".into(),
        });
    }
    Ok(Vote {
        manifest,
        agreeing,
        rejected,
    })
}

/// The vote with one voice per host: peers on one host (one PC running
/// several instances, several PCs behind one NAT address) count once, with
/// the manifest most of them offer (the first offered on a tie). Every
/// peer whose manifest is then exactly the majority's is a source; the
/// others are rejected with a reason.
pub fn majority_by_host<K: Clone + Display, H: Ord>(
    candidates: Vec<(K, H, Manifest)>,
) -> Result<Vote<K>, VoteError> {
    // host -> manifest digest -> (peers offering it, first of them)
    let mut hosts: BTreeMap<&H, BTreeMap<Blake3Hash, (usize, usize)>> = BTreeMap::new();
    for (index, (_, host, manifest)) in candidates.iter().enumerate() {
        hosts
            .entry(host)
            .or_default()
            .entry(manifest.digest())
            .or_insert((0, index))
            .0 += 1;
    }
    let voices: Vec<(usize, Manifest)> = hosts
        .values()
        .filter_map(|offers| {
            let (_, first) = offers
                .values()
                .max_by_key(|(count, first)| (*count, std::cmp::Reverse(*first)))?;
            Some((*first, candidates[*first].2.clone()))
        })
        .collect();
    let manifest = majority_manifest(voices)?.manifest;
    let mut agreeing = Vec::new();
    let mut rejected = Vec::new();
    for (key, _, theirs) in candidates {
        match disagreement(&manifest, &theirs) {
            None => agreeing.push(key),
            Some(reason) => rejected.push((key, reason)),
        }
    }
    Ok(Vote {
        manifest,
        agreeing,
        rejected,
    })
}

/// How `theirs` differs from the majority, in words; `None` if it does not.
fn disagreement(majority: &Manifest, theirs: &Manifest) -> Option<String> {
    for entry in &majority.files {
        match theirs.file(&entry.path) {
            None => return Some(format!("lacks {}", entry.path)),
            Some(their) if their.len_bytes != entry.len_bytes => {
                return Some(format!(
                    "has {} at {} bytes; the majority has {} bytes",
                    entry.path, their.len_bytes, entry.len_bytes
                ));
            }
            Some(their) if file_key(their) != file_key(entry) => {
                return Some(format!("has different contents in {}", entry.path));
            }
            Some(_) => {}
        }
    }
    theirs
        .files
        .iter()
        .find(|f| majority.file(&f.path).is_none())
        .map(|extra| format!("has an extra file {}", extra.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::GameId;
    use crate::manifest::ChunkEntry;
    use crate::paths::validate_relative_path;
    use crate::version::GameVersion;
    use proptest::prelude::*;

    fn manifest(files: &[(&str, u64, u8)]) -> Manifest {
        Manifest {
            game: GameId::parse("ut2004").unwrap(),
            version: GameVersion::parse("1").unwrap(),
            files: files
                .iter()
                .map(|(path, len, seed)| FileEntry {
                    path: validate_relative_path(path).unwrap(),
                    len_bytes: *len,
                    chunks: (*len > 0)
                        .then(|| ChunkEntry {
                            len: u32::try_from(*len).unwrap(),
                            hash: Blake3Hash::of(&[*seed]),
                        })
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_majority_wins_and_liars_are_named() {
        let honest = manifest(&[("a.zip", 100_000, 1), ("b.pak", 10, 2)]);
        let flipped = manifest(&[("a.zip", 100_000, 9), ("b.pak", 10, 2)]);
        let resized = manifest(&[("a.zip", 99_999, 1), ("b.pak", 10, 2)]);
        let vote = majority_manifest(vec![
            ("p1", honest.clone()),
            ("p2", flipped),
            ("p3", honest.clone()),
            ("p4", resized),
            ("p5", honest.clone()),
        ])
        .unwrap();
        assert_eq!(vote.manifest, honest);
        assert_eq!(vote.agreeing, ["p1", "p3", "p5"]);
        let reasons: BTreeMap<_, _> = vote.rejected.into_iter().collect();
        assert!(
            reasons["p2"].contains("different contents in a.zip"),
            "{reasons:?}"
        );
        assert!(reasons["p4"].contains("99999 bytes"), "{reasons:?}");
    }

    #[test]
    fn one_host_has_one_voice_whatever_its_number_of_peers() {
        let honest = manifest(&[("a.zip", 100_000, 1)]);
        let tampered = manifest(&[("a.zip", 100_000, 9)]);
        // One honest PC against three instances on one other PC: 1 vs 1.
        let one_honest = vec![
            ("h0", "10.0.0.1", honest.clone()),
            ("h1a", "10.0.0.2", tampered.clone()),
            ("h1b", "10.0.0.2", tampered.clone()),
            ("h1c", "10.0.0.2", tampered.clone()),
        ];
        assert!(matches!(
            majority_by_host(one_honest),
            Err(VoteError::NoMajority { .. })
        ));
        // Two honest PCs: they win, and the three instances are named.
        let two_honest = vec![
            ("h0", "10.0.0.1", honest.clone()),
            ("h1a", "10.0.0.2", tampered.clone()),
            ("h1b", "10.0.0.2", tampered.clone()),
            ("h1c", "10.0.0.2", tampered.clone()),
            ("h3", "10.0.0.3", honest.clone()),
        ];
        let vote = majority_by_host(two_honest).unwrap();
        assert_eq!(vote.manifest, honest);
        assert_eq!(vote.agreeing, ["h0", "h3"]);
        assert_eq!(vote.rejected.len(), 3);
        // A host whose instances disagree speaks with its majority; its
        // honest instance is still a source.
        let split_host = vec![
            ("h0", "10.0.0.1", honest.clone()),
            ("h1a", "10.0.0.2", tampered.clone()),
            ("h1b", "10.0.0.2", honest.clone()),
            ("h1c", "10.0.0.2", tampered),
            ("h3", "10.0.0.3", honest.clone()),
        ];
        let vote = majority_by_host(split_host).unwrap();
        assert_eq!(vote.manifest, honest);
        assert_eq!(vote.agreeing, ["h0", "h1b", "h3"]);
    }

    #[test]
    fn one_manifest_is_taken_as_is_and_a_tie_decides_nothing() {
        let only = manifest(&[("a.zip", 5, 1)]);
        assert_eq!(
            majority_manifest(vec![("p", only.clone())])
                .unwrap()
                .manifest,
            only
        );
        let other = manifest(&[("a.zip", 5, 2)]);
        let err = majority_manifest(vec![("p", only), ("q", other)]).unwrap_err();
        assert!(matches!(err, VoteError::NoMajority { .. }));
        assert_eq!(
            majority_manifest::<&str>(vec![]).unwrap_err(),
            VoteError::NoManifests
        );
    }

    proptest! {
        /// With fewer liars than honest peers, the vote returns the honest
        /// manifest, uses exactly the honest peers and rejects every liar.
        #[test]
        fn honest_majority_always_wins(
            sizes in prop::collection::vec(1u64..300_000, 1..6),
            honest_count in 1usize..6,
            lies in prop::collection::vec((0usize..6, 0u8..3, 1u8..255), 0..5),
        ) {
            let names: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}.bin")).collect();
            let spec: Vec<(&str, u64, u8)> = names.iter().zip(&sizes).map(|(n, s)| (n.as_str(), *s, 0)).collect();
            let honest = manifest(&spec);
            let liar_count = lies.len().min(honest_count.saturating_sub(1));
            let mut candidates: Vec<(String, Manifest)> =
                (0..honest_count).map(|i| (format!("h{i}"), honest.clone())).collect();
            for (i, (file, kind, seed)) in lies.iter().take(liar_count).enumerate() {
                let mut lie = honest.clone();
                let file = file % lie.files.len();
                match kind {
                    0 => lie.files[file].chunks[0].hash = Blake3Hash::of(&[*seed, 1]),
                    1 => {
                        let last = lie.files[file].chunks.len() - 1;
                        lie.files[file].chunks[last].len -= 1;
                        lie.files[file].len_bytes -= 1;
                    }
                    _ => {
                        lie.files.remove(file);
                    }
                }
                candidates.push((format!("l{i}"), lie));
            }
            let vote = majority_manifest(candidates).unwrap();
            prop_assert_eq!(&vote.manifest, &honest);
            prop_assert_eq!(vote.agreeing.len(), honest_count);
            prop_assert!(vote.agreeing.iter().all(|k| k.starts_with('h')));
            prop_assert_eq!(vote.rejected.len(), liar_count);
        }
    }
}
