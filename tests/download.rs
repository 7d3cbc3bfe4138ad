//! Hub downloads against an in-process fake hub on 127.0.0.1 that serves a tiny diffusers
//! repository (the SD-Turbo test fixture) with the hub's URL layout and headers: `resolve`
//! URLs with `x-repo-commit`, `ETag`; weight files answer with a redirect to a storage URL
//! carrying `x-linked-etag`/`x-linked-size` (the SHA-256), as LFS files do; storage URLs honour
//! `Range`. It also answers the hub API's file listing and serves plain files for direct-URL
//! downloads, and can fail on demand (cut connections, HTTP 500, 401, corrupt bytes).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use latent_studio::models::{
    controlnet_repo_id, format_size, load_model, Catalog, CatalogEntry, DownloadError,
    DownloadProgress, FreeSpace, HubCache, HubClient, HubReference, LoadOptions, DISK_MARGIN_BYTES,
};

#[path = "download/fake_hub.rs"]
mod fake_hub;

use fake_hub::{
    FakeHub, TempDir, COMMIT, CONTROLNET_FIXTURE, CONTROLNET_REPO, FILES, PICKLE_CONTROLNET_REPO,
    REPO, UNET, UPSCALER_FILE, UPSCALER_FIXTURE, UPSCALER_REPO,
};

fn test_entry(files: &[&str]) -> CatalogEntry {
    let files: Vec<String> = files.iter().map(|f| format!("\"{f}\"")).collect();
    let json = format!(
        r#"{{"default": "{REPO}", "models": [{{
            "id": "{REPO}", "name": "Tiny Turbo", "family": "sd", "approx_size_bytes": 9500000,
            "defaults": {{"steps": 1, "guidance": 0.0, "width": 64, "height": 64}},
            "files": [{}]
        }}]}}"#,
        files.join(", ")
    );
    Catalog::from_json(&json).unwrap().default_entry().clone()
}

fn repo_dir(cache: &HubCache) -> PathBuf {
    cache.root().join("models--test-org--tiny-turbo")
}

fn never_cancel(_: &str, _: DownloadProgress) -> bool {
    true
}

#[test]
fn full_download_creates_the_hugging_face_cache_layout() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("full");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    assert_eq!(cache.snapshot_if_complete(&entry), None);

    let mut reports: Vec<(String, DownloadProgress)> = Vec::new();
    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, |file, p| {
            reports.push((file.to_string(), p));
            true
        })
        .unwrap();

    let repo = repo_dir(&cache);
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    for file in FILES {
        let link = snapshot.join(file);
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink(), "{file} is not a symlink");
        let depth = file.split('/').count();
        let expected = format!("{}blobs/{}", "../".repeat(depth + 1), hub.etag(file));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from(expected),
            "{file}"
        );
        let blob = repo.join("blobs").join(hub.etag(file));
        assert_eq!(fs::read(&blob).unwrap(), hub.files[file].data, "{file}");
        assert_eq!(fs::read(&link).unwrap(), hub.files[file].data, "{file}");
    }
    let mut blobs: Vec<String> = fs::read_dir(repo.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut etags: Vec<String> = FILES.iter().map(|f| hub.etag(f)).collect();
    etags.sort();
    assert_eq!(
        blobs, etags,
        "blobs/ holds exactly the files, no .incomplete"
    );

    // Weights went through the storage redirect; metadata came from HEAD requests.
    let requests = hub.requests();
    let unet_etag = hub.etag(UNET);
    assert!(requests.iter().any(|r| r.method == "GET"
        && r.path == format!("/storage/{unet_etag}")
        && r.range.is_none()));
    assert!(requests
        .iter()
        .any(|r| r.method == "HEAD" && r.path == format!("/{REPO}/resolve/main/model_index.json")));
    // After the first file, everything is fetched at the pinned commit.
    assert!(requests
        .iter()
        .any(|r| r.method == "HEAD" && r.path == format!("/{REPO}/resolve/{COMMIT}/{UNET}")));

    // Progress: every file reported, the last report of each is complete.
    let unet_len = hub.files[UNET].data.len() as u64;
    let last_unet = reports.iter().rev().find(|(f, _)| f == UNET).unwrap().1;
    assert_eq!(last_unet.bytes_done, unet_len);
    assert_eq!(last_unet.bytes_total, Some(unet_len));
    assert_eq!(last_unet.file_index, 9);
    assert_eq!(last_unet.file_count, FILES.len());
    for (i, file) in FILES.iter().enumerate() {
        assert!(
            reports.iter().any(|(f, p)| f == file && p.file_index == i),
            "{file}"
        );
    }

    assert_eq!(cache.snapshot_if_complete(&entry), Some(snapshot.clone()));
    let model = load_model(&snapshot, &LoadOptions::default());
    assert!(model.is_ok(), "{:?}", model.err());
}

#[test]
fn a_complete_model_is_returned_without_network() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("again");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    let first = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let count = hub.requests().len();

    let second = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(
        hub.requests().len(),
        count,
        "the second fetch made requests"
    );

    // A catalog entry asking for fp16 variants is satisfied by the full-precision files a
    // diffusers download (without `variant="fp16"`) left in the snapshot.
    let fp16: Vec<String> = FILES
        .iter()
        .map(|f| f.replace(".safetensors", ".fp16.safetensors"))
        .collect();
    let fp16: Vec<&str> = fp16.iter().map(String::as_str).collect();
    let fp16_entry = test_entry(&fp16);
    assert_eq!(cache.snapshot_if_complete(&fp16_entry), Some(first.clone()));
    let again = hub
        .client()
        .fetch_model(&fp16_entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(hub.requests().len(), count);

    // Even with the hub gone.
    let endpoint = hub.endpoint();
    drop(hub);
    let third = HubClient::new(&endpoint)
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(first, third);
}

#[test]
fn an_interrupted_transfer_resumes_with_a_range_request() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("resume");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    const CUT: usize = 1_000_000;
    hub.behavior.lock().unwrap().cut = Some((UNET.to_string(), CUT));

    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::Interrupted { .. }), "{err:?}");
    assert!(err.to_string().contains("resume"), "{err}");
    let repo = repo_dir(&cache);
    let blob = repo.join("blobs").join(hub.etag(UNET));
    let incomplete = repo
        .join("blobs")
        .join(format!("{}.incomplete", hub.etag(UNET)));
    assert_eq!(fs::metadata(&incomplete).unwrap().len(), CUT as u64);
    assert!(!blob.exists(), "a partial file must not become a blob");
    assert!(!repo.join("snapshots").join(COMMIT).join(UNET).exists());
    assert!(!repo.join("refs/main").exists());
    assert_eq!(cache.snapshot_if_complete(&entry), None);

    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let requests = hub.requests();
    let storage = format!("/storage/{}", hub.etag(UNET));
    let range = format!("bytes={CUT}-");
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == storage
            && r.range.as_deref() == Some(range.as_str())),
        "no resumed request in {requests:?}"
    );
    assert!(!incomplete.exists());
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
    // Files completed before the cut were not fetched again.
    let te = format!("/storage/{}", hub.etag("text_encoder/model.safetensors"));
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == te)
            .count(),
        1
    );
    assert!(load_model(&snapshot, &LoadOptions::default()).is_ok());
}

#[test]
fn cancelling_keeps_the_partial_file_for_later() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("cancel");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    hub.behavior.lock().unwrap().chunk_delay = Some(Duration::from_millis(10));

    let err = hub
        .client()
        .fetch_model(&entry, &cache, |file, p| {
            !(file == UNET && p.bytes_done > 0)
        })
        .unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err:?}");
    let repo = repo_dir(&cache);
    let incomplete = repo
        .join("blobs")
        .join(format!("{}.incomplete", hub.etag(UNET)));
    let partial = fs::metadata(&incomplete).unwrap().len();
    assert!(
        partial > 0 && partial < hub.files[UNET].data.len() as u64,
        "{partial}"
    );
    assert!(!repo.join("blobs").join(hub.etag(UNET)).exists());
    assert!(!repo.join("refs/main").exists());

    hub.behavior.lock().unwrap().chunk_delay = None;
    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let range = format!("bytes={partial}-");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(range.as_str())));
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
}

#[test]
fn an_unreachable_hub_gives_the_offline_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let tmp = TempDir::new("offline");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    let err = HubClient::new(&format!("http://127.0.0.1:{port}"))
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(err.is_offline(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("could not reach the Hugging Face hub"),
        "{message}"
    );
    assert!(message.contains("Open model folder…"), "{message}");
    assert!(message.contains("--model PATH"), "{message}");

    let err = HubClient::new("http://127.0.0.1:1")
        .with_offline(true)
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(
        err.is_offline() && err.to_string().contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn a_missing_file_names_the_file() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("missing");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&["model_index.json", "unet/nope.safetensors"]);
    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("unet/nope.safetensors"), "{err}");
}

#[test]
fn a_repo_outside_the_catalog_fetches_its_diffusers_files_only() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("repo");
    let cache = HubCache::new(&tmp.0);
    let models = tmp.0.join("models");
    let reference = HubReference::parse(REPO).unwrap();
    assert_eq!(
        reference,
        HubReference::Repo {
            id: REPO.to_string()
        }
    );
    let snapshot = hub
        .client()
        .fetch(&reference, &cache, &models, never_cancel)
        .unwrap();
    assert_eq!(snapshot, repo_dir(&cache).join("snapshots").join(COMMIT));
    for file in FILES {
        assert_eq!(
            fs::read(snapshot.join(file)).unwrap(),
            hub.files[file].data,
            "{file}"
        );
    }
    let requests = hub.requests();
    assert!(requests
        .iter()
        .any(|r| r.path == format!("/api/models/{REPO}/revision/main")));
    for never in ["README.md", ".bin", "safety_checker"] {
        assert!(
            !requests.iter().any(|r| r.path.contains(never)),
            "{never} was requested"
        );
    }
    // Every file was asked for at the commit the listing named.
    assert!(requests
        .iter()
        .filter(|r| r.method == "HEAD")
        .all(|r| r.path.contains(COMMIT)));
    assert_eq!(
        fs::read_to_string(repo_dir(&cache).join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(load_model(&snapshot, &LoadOptions::default()).is_ok());

    // Loading it again needs no network.
    let count = hub.requests().len();
    let again = hub
        .client()
        .fetch(&reference, &cache, &models, never_cancel)
        .unwrap();
    assert_eq!(again, snapshot);
    assert_eq!(hub.requests().len(), count);
}

#[test]
fn a_single_file_in_a_repo_goes_into_the_cache_layout() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("single");
    let cache = HubCache::new(&tmp.0);
    let reference = HubReference::parse(&format!("{REPO}/{UNET}")).unwrap();
    let path = hub
        .client()
        .fetch(&reference, &cache, &tmp.0.join("models"), never_cancel)
        .unwrap();
    let repo = repo_dir(&cache);
    assert_eq!(path, repo.join("snapshots").join(COMMIT).join(UNET));
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&path).unwrap(), hub.files[UNET].data);
    assert!(repo.join("blobs").join(hub.etag(UNET)).is_file());
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    // Only that file was fetched.
    assert!(!hub
        .requests()
        .iter()
        .any(|r| r.path.contains("model_index")));
}

#[test]
fn a_direct_url_is_saved_into_the_models_folder_and_never_overwrites() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("direct");
    let cache = HubCache::new(tmp.0.join("hub"));
    let models = tmp.0.join("models");
    let data = &hub.files[UNET].data;
    let url = format!("{}/files/tiny.safetensors", hub.endpoint());
    let mut reports = Vec::new();
    let reference = HubReference::parse(&url).unwrap();
    let path = hub
        .client()
        .fetch(&reference, &cache, &models, |file, p| {
            reports.push((file.to_string(), p));
            true
        })
        .unwrap();
    assert_eq!(path, models.join("tiny.safetensors"));
    assert_eq!(&fs::read(&path).unwrap(), data);
    let last = reports.last().unwrap();
    assert_eq!(last.0, "tiny.safetensors");
    assert_eq!(last.1.bytes_done, data.len() as u64);
    assert_eq!(last.1.bytes_total, Some(data.len() as u64));
    assert!(!models.join("tiny.safetensors.incomplete").exists());

    // The same URL again: found without network, not copied a second time.
    let count = hub.requests().len();
    let again = hub.client().fetch_url(&url, &models, never_cancel).unwrap();
    assert_eq!(again, path);
    assert_eq!(hub.requests().len(), count);
    let safetensors = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".safetensors")
            })
            .count()
    };
    assert_eq!(safetensors(&models), 1);

    // The server names the file; a different file of that name stays as it is.
    let mine = models.join("Tiny Model v1.safetensors");
    fs::write(&mine, b"the user's own file").unwrap();
    let url = format!("{}/api/download/models/7", hub.endpoint());
    let path = hub.client().fetch_url(&url, &models, never_cancel).unwrap();
    assert_eq!(path, models.join("Tiny Model v1 (2).safetensors"));
    assert_eq!(&fs::read(&path).unwrap(), data);
    assert_eq!(fs::read(&mine).unwrap(), b"the user's own file");
}

#[test]
fn pickles_are_refused_by_name_before_any_download() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("pickle");
    let models = tmp.0.join("models");
    for text in [
        format!("{REPO}/model.ckpt"),
        format!("{REPO}/unet/diffusion_pytorch_model.bin"),
        format!("{}/files/model.pt", hub.endpoint()),
    ] {
        let err = HubReference::parse(&text).unwrap_err();
        assert!(
            matches!(err, DownloadError::PickleRefused { .. }),
            "{text}: {err}"
        );
        assert!(err.to_string().contains("pickle"), "{err}");
    }
    let err = hub
        .client()
        .fetch_url(
            &format!("{}/files/model.ckpt", hub.endpoint()),
            &models,
            never_cancel,
        )
        .unwrap_err();
    assert!(matches!(err, DownloadError::PickleRefused { .. }), "{err}");
    assert!(hub.requests().is_empty(), "a request was made");

    // A server that names a pickle in Content-Disposition: refused before its bytes are kept.
    let url = format!("{}/api/download/models/8", hub.endpoint());
    let err = hub
        .client()
        .fetch_url(&url, &models, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::PickleRefused { .. }), "{err}");
    assert!(fs::read_dir(&models).map_or(true, |mut d| d.next().is_none()));
}

#[test]
fn transient_failures_are_tried_again_and_resume_where_they_stopped() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("retry");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    const CUT: usize = 1_000_000;
    {
        let mut behavior = hub.behavior.lock().unwrap();
        behavior.fail_next = 2;
        behavior.cut = Some((UNET.to_string(), CUT));
    }
    let snapshot = hub
        .retrying_client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
    let range = format!("bytes={CUT}-");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(range.as_str())));

    // Without retries the first HTTP 500 is the answer; a 404 is never tried again.
    let tmp = TempDir::new("no-retry");
    let cache = HubCache::new(&tmp.0);
    hub.behavior.lock().unwrap().fail_next = 1;
    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Http { status: 500, .. }),
        "{err:?}"
    );
    let before = hub.requests().len();
    let missing = test_entry(&["unet/nope.safetensors"]);
    let err = hub
        .retrying_client()
        .fetch_model(&missing, &cache, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err:?}");
    assert_eq!(hub.requests().len(), before + 1, "a 404 was tried again");
}

#[test]
fn a_corrupt_lfs_file_fails_its_sha256_check_and_is_removed() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("corrupt");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&[UNET]);
    hub.behavior.lock().unwrap().corrupt = Some(UNET.to_string());
    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&hub.etag(UNET)), "{err}");
    let blobs = repo_dir(&cache).join("blobs");
    assert!(!blobs.join(hub.etag(UNET)).exists());
    assert!(!blobs
        .join(format!("{}.incomplete", hub.etag(UNET)))
        .exists());
    // The next try gets good bytes.
    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
}

#[test]
fn a_download_that_does_not_fit_on_the_disk_is_refused_before_it_starts() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("disk");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    let total: u64 = FILES.iter().map(|f| hub.files[*f].data.len() as u64).sum();
    let free = DISK_MARGIN_BYTES + total / 2;
    let err = hub
        .client()
        .with_free_space(FreeSpace::Fixed(free))
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    match &err {
        DownloadError::NotEnoughSpace {
            needed, available, ..
        } => {
            assert_eq!((*needed, *available), (total, free));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&format_size(total)), "{message}");
    assert!(message.contains(&format_size(free)), "{message}");
    assert!(
        !hub.requests().iter().any(|r| r.method == "GET"),
        "a file was downloaded"
    );

    // Direct URLs are checked the same way.
    let url = format!("{}/files/tiny.safetensors", hub.endpoint());
    let err = hub
        .client()
        .with_free_space(FreeSpace::Fixed(1000))
        .fetch_url(&url, &tmp.0.join("models"), never_cancel)
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::NotEnoughSpace { .. }),
        "{err:?}"
    );

    // Enough room: it goes ahead.
    hub.client()
        .with_free_space(FreeSpace::Fixed(DISK_MARGIN_BYTES + total))
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
}

#[test]
fn a_refused_repository_says_how_to_give_a_token() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("denied");
    let cache = HubCache::new(&tmp.0);
    hub.behavior.lock().unwrap().deny = true;
    let entry = test_entry(&FILES);
    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::AccessDenied { status: 401, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("HF_TOKEN"), "{message}");
    assert!(message.contains("gated"), "{message}");

    let err = hub
        .client()
        .with_token(Some("hf_test".into()))
        .fetch(
            &HubReference::parse(REPO).unwrap(),
            &cache,
            &tmp.0.join("models"),
            never_cancel,
        )
        .unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer hf_test")));
}

#[test]
fn a_controlnet_repo_id_fetches_config_and_fp16_weights_then_loads_offline() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("controlnet");
    let cache = HubCache::new(&tmp.0);
    assert_eq!(
        controlnet_repo_id(Path::new(CONTROLNET_REPO)),
        Some(CONTROLNET_REPO)
    );
    assert_eq!(controlnet_repo_id(Path::new(CONTROLNET_FIXTURE)), None);
    let snapshot = hub
        .client()
        .fetch_controlnet(CONTROLNET_REPO, &cache, never_cancel)
        .unwrap();
    assert_eq!(
        snapshot,
        cache
            .repo_dir(CONTROLNET_REPO)
            .join("snapshots")
            .join(COMMIT)
    );
    let fp16 = "diffusion_pytorch_model.fp16.safetensors";
    assert!(snapshot.join("config.json").is_file());
    assert!(snapshot.join(fp16).is_file());
    let requests = hub.requests();
    assert!(requests.iter().any(|r| r.path.ends_with(fp16)));
    for never in ["/diffusion_pytorch_model.safetensors", ".bin"] {
        assert!(
            !requests.iter().any(|r| r.path.ends_with(never)),
            "{never} was requested"
        );
    }
    let loaded =
        latent_studio::models::controlnet::load_controlnet(&snapshot, &LoadOptions::default())
            .unwrap();
    assert_eq!(loaded.name, CONTROLNET_REPO);

    // Again, with the hub unreachable: the cached snapshot.
    let count = hub.requests().len();
    let again = HubClient::new(&hub.endpoint())
        .with_offline(true)
        .fetch_controlnet(CONTROLNET_REPO, &cache, never_cancel)
        .unwrap();
    assert_eq!(again, snapshot);
    assert_eq!(hub.requests().len(), count);
}

#[test]
fn a_controlnet_repo_that_cannot_be_fetched_says_why_in_one_line() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("controlnet-bad");
    let cache = HubCache::new(&tmp.0);
    let message = |client: HubClient, id: &str| {
        client
            .fetch_controlnet(id, &cache, never_cancel)
            .unwrap_err()
            .to_string()
    };
    let pickles = message(hub.client(), PICKLE_CONTROLNET_REPO);
    assert!(
        pickles.starts_with(&format!("ControlNet {PICKLE_CONTROLNET_REPO}: "))
            && pickles.contains(".safetensors"),
        "{pickles}"
    );
    assert!(!hub.requests().iter().any(|r| r.path.ends_with(".bin")));
    let unknown = message(hub.client(), "test-org/no-such-controlnet");
    assert!(
        unknown.contains("test-org/no-such-controlnet") && unknown.contains("no such repository"),
        "{unknown}"
    );
    let offline = message(
        HubClient::new(&hub.endpoint()).with_offline(true),
        CONTROLNET_REPO,
    );
    assert!(
        offline.contains(CONTROLNET_REPO) && offline.contains("could not be reached"),
        "{offline}"
    );
    for text in [pickles, unknown, offline] {
        assert!(!text.contains('\n'), "{text}");
    }
}

/// `generate --controlnet org/name` downloads the repository through the hub and makes the
/// image the local folder makes.
#[test]
fn the_cli_takes_a_controlnet_repo_id_and_makes_the_local_folders_image() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("controlnet-cli");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let run = |controlnet: &str, out: &Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_latent-studio"))
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HUB_CACHE", tmp.0.join("hub"))
            .env_remove("HF_HUB_OFFLINE")
            .args(["generate", "--model"])
            .arg(fixtures.join("models/sd1"))
            .args(["--prompt", "a house by a lake", "--controlnet", controlnet])
            .arg("--control-image")
            .arg(fixtures.join("control_lines_64.png"))
            .args(["--control-preprocess", "none", "--scheduler", "euler"])
            .args([
                "--steps", "2", "--seed", "80", "--width", "64", "--height", "64",
            ])
            .arg("--output")
            .arg(out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        (image::open(out).unwrap().to_rgb8().into_raw(), stderr)
    };
    let local = fixtures.join("models/sd1_controlnet");
    let (from_folder, _) = run(local.to_str().unwrap(), &tmp.0.join("folder.png"));
    let (from_hub, stderr) = run(CONTROLNET_REPO, &tmp.0.join("hub.png"));
    assert_eq!(from_folder, from_hub);
    // The download is printed as a model's is.
    let weights = "diffusion_pytorch_model.fp16.safetensors";
    let mib = hub.files[&format!("{CONTROLNET_REPO}/{weights}")]
        .data
        .len() as f64
        / 1048576.0;
    let line = format!("downloading {CONTROLNET_REPO} 2/2 {weights}: {mib:.1}/{mib:.1} MiB");
    assert!(stderr.contains(&line), "{stderr}");
    let text = latent_studio::formats::png::read_png_parameters(&tmp.0.join("hub.png"))
        .unwrap()
        .unwrap();
    assert!(
        text.contains(&format!("Model: {CONTROLNET_REPO},")),
        "{text}"
    );
}

/// `upscale --model org/name/file.safetensors` downloads the file into the cache and makes the
/// picture the local file makes; with the hub gone, the cached copy still serves.
#[test]
fn the_cli_upscales_with_a_hub_file_and_again_offline() {
    let hub = FakeHub::start();
    let endpoint = hub.endpoint();
    let tmp = TempDir::new("upscaler-cli");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |model: &str, out: &Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_latent-studio"))
            .current_dir(root)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HUB_CACHE", tmp.0.join("hub"))
            .env_remove("HF_HUB_OFFLINE")
            .args(["upscale", "--model", model, "--input"])
            .arg(root.join("tests/fixtures/control_lines_64.png"))
            .arg("--output")
            .arg(out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        (image::open(out).unwrap().to_rgb8(), stderr)
    };
    let reference = format!("{UPSCALER_REPO}/{UPSCALER_FILE}");
    let (local, _) = run(UPSCALER_FIXTURE, &tmp.0.join("local.png"));
    let (from_hub, stderr) = run(&reference, &tmp.0.join("hub.png"));
    assert_eq!(local.dimensions(), (128, 128));
    assert_eq!(local.as_raw(), from_hub.as_raw());
    let line = format!("downloading {reference} 1/1 {UPSCALER_FILE}: 0.0/0.0 MiB");
    assert!(stderr.contains(&line), "{stderr}");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.path.contains(UPSCALER_FILE)));
    drop(hub);
    let (offline, stderr) = run(&reference, &tmp.0.join("offline.png"));
    assert_eq!(local.as_raw(), offline.as_raw());
    assert!(!stderr.contains("downloading"), "{stderr}");
}

#[test]
fn a_hub_upscaler_that_cannot_be_fetched_says_why_in_one_line() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("upscaler-bad");
    let cache = HubCache::new(&tmp.0);
    let missing = hub
        .client()
        .fetch_upscaler(UPSCALER_REPO, "no_such.safetensors", &cache, never_cancel)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("test-org/tiny-upscaler/no_such.safetensors")
            && missing.contains("no such file"),
        "{missing}"
    );
    let offline = HubClient::new(&hub.endpoint())
        .with_offline(true)
        .fetch_upscaler(UPSCALER_REPO, UPSCALER_FILE, &cache, never_cancel)
        .unwrap_err()
        .to_string();
    assert!(offline.contains("could not be reached"), "{offline}");
    for text in [missing, offline] {
        assert!(!text.contains('\n'), "{text}");
    }
}

/// `generate --hires-upscaler org/name/file.safetensors` fetches the upscaler through the same
/// path as `upscale` and makes the image the local file makes, recording the file's stem.
#[test]
fn the_cli_hires_fix_takes_a_hub_upscaler_file() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("upscaler-hires");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |upscaler: &str, out: &Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_latent-studio"))
            .current_dir(root)
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HUB_CACHE", tmp.0.join("hub"))
            .env_remove("HF_HUB_OFFLINE")
            .args(["generate", "--model", "tests/fixtures/models/sd1"])
            .args([
                "--prompt",
                "a castle",
                "--scheduler",
                "euler",
                "--seed",
                "3",
            ])
            .args(["--steps", "2", "--width", "64", "--height", "64"])
            .args(["--hires-scale", "1.5", "--hires-steps", "2"])
            .args(["--hires-upscaler", upscaler, "--output"])
            .arg(out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        image::open(out).unwrap().to_rgb8()
    };
    let local = run(UPSCALER_FIXTURE, &tmp.0.join("local.png"));
    let from_hub = run(
        &format!("{UPSCALER_REPO}/{UPSCALER_FILE}"),
        &tmp.0.join("hub.png"),
    );
    assert_eq!(local.dimensions(), (96, 96));
    assert_eq!(local.as_raw(), from_hub.as_raw());
    let text = latent_studio::formats::png::read_png_parameters(&tmp.0.join("hub.png"))
        .unwrap()
        .unwrap();
    assert!(text.contains("Hires upscaler: compact_x2"), "{text}");
}
