// SPDX-License-Identifier: Apache-2.0
//! The nodes' image store: OCI archives loaded as `kind load image-archive`
//! or `ctr -n k8s.io images import` load them, kept as one OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) per sandbox, and unpacked
//! into a container's root filesystem when a pod uses one.

use std::fs;
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

use oci_spec::distribution::Reference;
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
};
use sha2::{Digest as _, Sha256};

/// The annotation an OCI archive names its images with.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not an OCI archive ({1}): save images with `podman save --format oci-archive` or `skopeo copy … oci-archive:FILE`")]
    NotOci(String, String),
    #[error("blob {0} is corrupt: its content hashes to sha256:{1}")]
    Corrupt(String, String),
    #[error("{0} has no image: its index.json lists no manifest for linux/amd64")]
    Empty(String),
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

fn invalid(what: impl Into<String>) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    let what = what.into();
    move |e| ImageError::Invalid {
        what,
        detail: e.to_string(),
    }
}

/// An image found in the store, ready to unpack.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// `registry/repository` as the store names it.
    pub repository: String,
    /// The manifest's digest (`sha256:…`): what a registry and the kubelet's
    /// `imageID` report.
    pub digest: String,
    pub config: ImageConfiguration,
    /// Layer blobs, bottom first.
    pub layers: Vec<PathBuf>,
}

/// One sandbox's image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn new(dir: impl Into<PathBuf>) -> ImageStore {
        ImageStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    fn index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.dir.join("index.json");
        if !path.exists() {
            return ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(Vec::new())
                .build()
                .map_err(invalid("empty index"));
        }
        ImageIndex::from_file(&path).map_err(invalid(path.display().to_string()))
    }

    /// Loads every image of an OCI archive (a tar of an OCI image layout),
    /// checking each blob's digest; returns the names it loaded (`name@digest`
    /// for an image without a name). Loading a name again replaces it.
    pub fn load_archive(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        let shown = archive.display().to_string();
        let blobs = self.dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(format!("create {}", blobs.display())))?;
        let _lock = StoreLock::take(&self.dir)?;
        let file = fs::File::open(archive).map_err(io_err(format!("open {shown}")))?;
        let mut tar = tar::Archive::new(io::BufReader::new(file));
        let mut index: Option<ImageIndex> = None;
        let entries = tar
            .entries()
            .map_err(|e| ImageError::NotOci(shown.clone(), e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::NotOci(shown.clone(), e.to_string()))?;
            let path = entry
                .path()
                .map_err(io_err(format!("read {shown}")))?
                .into_owned();
            let path = path.strip_prefix("./").unwrap_or(&path).to_owned();
            if path == Path::new("index.json") {
                index = Some(ImageIndex::from_reader(&mut entry).map_err(invalid("index.json"))?);
            } else if let Ok(hex) = path.strip_prefix("blobs/sha256") {
                let hex = hex.to_string_lossy().into_owned();
                if hex.is_empty() || !entry.header().entry_type().is_file() {
                    continue;
                }
                self.store_blob(&hex, &mut entry)?;
            }
        }
        let index =
            index.ok_or_else(|| ImageError::NotOci(shown.clone(), "no index.json".into()))?;
        let mut store = self.index()?;
        let mut loaded = Vec::new();
        for desc in index.manifests() {
            let Some(manifest) = self.platform_manifest(desc)? else {
                continue;
            };
            let name = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned();
            let mut entry = manifest.clone();
            let mut annotations = std::collections::HashMap::new();
            if let Some(n) = &name {
                annotations.insert(REF_NAME.to_owned(), n.clone());
            }
            entry.set_annotations(Some(annotations));
            let mut manifests = store.manifests().clone();
            if let Some(n) = &name {
                manifests
                    .retain(|m| m.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != Some(n));
            }
            manifests.push(entry);
            store.set_manifests(manifests);
            loaded.push(name.unwrap_or_else(|| format!("@{}", manifest.digest())));
        }
        if loaded.is_empty() {
            return Err(ImageError::Empty(shown));
        }
        let tmp = self.dir.join("index.json.tmp");
        store
            .to_file(&tmp)
            .map_err(invalid("the store's index.json"))?;
        fs::rename(&tmp, self.dir.join("index.json"))
            .map_err(io_err("replace the store's index.json"))?;
        fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .map_err(io_err("write oci-layout"))?;
        Ok(loaded)
    }

    /// Copies a blob in, refusing one whose content does not match its name.
    fn store_blob(&self, hex: &str, from: &mut impl Read) -> Result<(), ImageError> {
        let dest = self.blob(hex);
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        let mut out =
            fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).map_err(io_err("read a blob"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(io_err(format!("write {}", tmp.display())))?;
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != hex {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::Corrupt(format!("sha256:{hex}"), got));
        }
        fs::rename(&tmp, &dest).map_err(io_err(format!("store {}", dest.display())))
    }

    /// The linux/amd64 image manifest a descriptor leads to (through a
    /// multi-platform index if it is one).
    fn platform_manifest(&self, desc: &Descriptor) -> Result<Option<Descriptor>, ImageError> {
        match desc.media_type() {
            MediaType::ImageManifest => Ok(Some(desc.clone())),
            MediaType::ImageIndex => {
                let inner = ImageIndex::from_file(self.blob(desc.digest().as_ref()))
                    .map_err(invalid(format!("index {}", desc.digest())))?;
                let wanted = inner.manifests().iter().find(|m| {
                    m.platform().as_ref().is_none_or(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
                    })
                });
                match wanted {
                    Some(m) => self.platform_manifest(m),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// The stored image a pod's `image` names (by `name:tag`, by digest, or
    /// both), as a node's containerd resolves it; `None` if not loaded.
    pub fn resolve(&self, image: &str) -> Result<Option<StoredImage>, ImageError> {
        let Ok(wanted) = image.parse::<Reference>() else {
            return Ok(None);
        };
        let index = self.index()?;
        // The newest load of a name wins.
        for desc in index.manifests().iter().rev() {
            let digest = desc.digest().to_string();
            let name = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .and_then(|n| n.parse::<Reference>().ok());
            let same_repo = name.as_ref().is_some_and(|n| {
                n.registry() == wanted.registry() && n.repository() == wanted.repository()
            });
            let matches = match wanted.digest() {
                Some(d) => d == digest && (same_repo || name.is_none()),
                None => same_repo && name.as_ref().and_then(|n| n.tag()) == wanted.tag(),
            };
            if matches {
                return self.open(desc, &wanted).map(Some);
            }
        }
        Ok(None)
    }

    fn open(&self, desc: &Descriptor, wanted: &Reference) -> Result<StoredImage, ImageError> {
        let digest = desc.digest().to_string();
        let manifest = ImageManifest::from_file(self.blob(&digest))
            .map_err(invalid(format!("manifest {digest}")))?;
        let config = ImageConfiguration::from_file(self.blob(manifest.config().digest().as_ref()))
            .map_err(invalid(format!("config of {digest}")))?;
        Ok(StoredImage {
            repository: format!("{}/{}", wanted.registry(), wanted.repository()),
            digest,
            config,
            layers: manifest
                .layers()
                .iter()
                .map(|l| self.blob(l.digest().as_ref()))
                .collect(),
        })
    }
}

/// Unpacks an image's layers into `rootfs`, applying whiteouts
/// (`.wh.NAME` deletes NAME, `.wh..wh..opq` empties its directory).
pub fn unpack(image: &StoredImage, rootfs: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(rootfs).map_err(io_err(format!("create {}", rootfs.display())))?;
    for layer in &image.layers {
        let file = fs::File::open(layer).map_err(io_err(format!("open {}", layer.display())))?;
        let mut reader = io::BufReader::new(file);
        let gzip = {
            use io::BufRead as _;
            let head = reader.fill_buf().map_err(io_err("read a layer"))?;
            head.starts_with(&[0x1f, 0x8b])
        };
        let stream: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let mut tar = tar::Archive::new(stream);
        tar.set_preserve_permissions(true);
        tar.set_overwrite(true);
        tar.set_unpack_xattrs(false);
        for entry in tar.entries().map_err(io_err("read a layer"))? {
            let mut entry = entry.map_err(io_err("read a layer entry"))?;
            let path = entry
                .path()
                .map_err(io_err("read a layer path"))?
                .into_owned();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = rootfs.join(path.parent().unwrap_or(Path::new("")));
            if name == ".wh..wh..opq" {
                if let Ok(d) = fs::read_dir(&parent) {
                    for e in d.flatten() {
                        let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
                    }
                }
            } else if let Some(gone) = name.strip_prefix(".wh.") {
                let p = parent.join(gone);
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
            } else {
                entry
                    .unpack_in(rootfs)
                    .map_err(io_err(format!("unpack {}", path.display())))?;
            }
        }
    }
    Ok(())
}

/// An exclusive `flock` on the store, so two loads never interleave.
struct StoreLock(#[allow(dead_code)] fs::File);

impl StoreLock {
    fn take(dir: &Path) -> Result<StoreLock, ImageError> {
        let path = dir.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on an fd we own; the lock goes with the file.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(format!("lock {}", path.display()))(
                io::Error::last_os_error(),
            ));
        }
        Ok(StoreLock(f))
    }
}
