//! Cover art. A catalog entry may name a cover (`covers/ut2004.png`): it is
//! looked up beside an organiser's catalog file first, then among the covers
//! embedded from `assets/covers/`. Decoded once and kept as a texture. A game
//! without a cover (or with one that cannot be read) gets a generated one:
//! its colour and initials, never a blank box.

use std::collections::HashMap;
use std::path::PathBuf;

use include_dir::{Dir, include_dir};

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../assets");

/// Largest cover file read, so a bad catalog cannot make us decode a giant.
const MAX_COVER_BYTES: u64 = 4 * 1024 * 1024;

/// Decoded covers, by the path the catalog names.
#[derive(Default)]
pub struct Covers {
    /// The folder of an organiser's catalog file, searched first.
    pub catalog_dir: Option<PathBuf>,
    textures: HashMap<String, Option<egui::TextureHandle>>,
}

impl std::fmt::Debug for Covers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Covers")
            .field("catalog_dir", &self.catalog_dir)
            .field("cached", &self.textures.len())
            .finish()
    }
}

/// The bytes of a cover: beside the catalog file, else embedded.
pub fn cover_bytes(catalog_dir: Option<&std::path::Path>, cover: &str) -> Option<Vec<u8>> {
    let rel = lanspread_core::validate_relative_path(cover).ok()?;
    if let Some(dir) = catalog_dir {
        let path = rel.join_to(dir);
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= MAX_COVER_BYTES) {
            return std::fs::read(&path).ok();
        }
    }
    EMBEDDED
        .get_file(rel.as_str())
        .map(|file| file.contents().to_vec())
}

/// Decodes PNG or JPEG bytes into an image egui can show.
pub fn decode(bytes: &[u8]) -> Option<egui::ColorImage> {
    let image = image::load_from_memory(bytes).ok()?.to_rgba8();
    let size = [image.width() as usize, image.height() as usize];
    Some(egui::ColorImage::from_rgba_unmultiplied(
        size,
        image.as_raw(),
    ))
}

impl Covers {
    /// The texture for `cover`, decoding it the first time it is asked for.
    pub fn texture(&mut self, ctx: &egui::Context, cover: &str) -> Option<egui::TextureHandle> {
        if let Some(cached) = self.textures.get(cover) {
            return cached.clone();
        }
        let texture = cover_bytes(self.catalog_dir.as_deref(), cover)
            .and_then(|bytes| decode(&bytes))
            .map(|image| {
                ctx.load_texture(
                    format!("cover:{cover}"),
                    image,
                    egui::TextureOptions::LINEAR,
                )
            });
        if texture.is_none() {
            tracing::warn!("cover {cover} could not be read; a generated one is shown");
        }
        self.textures.insert(cover.to_owned(), texture.clone());
        texture
    }

    /// Forgets decoded covers (the catalog changed).
    pub fn clear(&mut self) {
        self.textures.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_covers_decode() {
        let catalog = lanspread_core::GameCatalog::embedded().unwrap();
        let mut named = 0;
        for entry in catalog.entries() {
            if let Some(cover) = &entry.cover {
                let bytes =
                    cover_bytes(None, cover).unwrap_or_else(|| panic!("{cover} is not embedded"));
                let image = decode(&bytes).unwrap();
                assert!(image.size[0] > 0 && image.size[1] > 0);
                named += 1;
            }
        }
        assert!(named > 0, "the catalog names at least one cover");
    }

    #[test]
    fn a_cover_beside_an_organisers_catalog_wins_and_bad_ones_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("covers")).unwrap();
        let mut png = Vec::new();
        image::RgbaImage::from_pixel(3, 2, image::Rgba([1, 2, 3, 255]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(dir.path().join("covers/openarena.png"), &png).unwrap();
        let bytes = cover_bytes(Some(dir.path()), "covers/openarena.png").unwrap();
        assert_eq!(decode(&bytes).unwrap().size, [3, 2]);
        std::fs::write(dir.path().join("covers/broken.png"), b"not a png").unwrap();
        assert!(decode(&cover_bytes(Some(dir.path()), "covers/broken.png").unwrap()).is_none());
        assert!(cover_bytes(Some(dir.path()), "../escape.png").is_none());
        assert!(cover_bytes(None, "covers/none.png").is_none());
    }
}
