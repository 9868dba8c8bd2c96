//! A deleted tenant's blobs go with it, wherever they are kept.

use reqwest::multipart::{Form, Part};

use super::*;

/// A tenant deleted with its functions (`?force=true`) leaves no blob bytes
/// behind, in a directory or in the bucket, while another tenant's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_deletes_its_blobs() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let k = Some(key.as_str());
    let created = admin(
        &host,
        Method::POST,
        "/v1/tenants",
        k,
        Some(json!({ "name": "goneco" })),
    )
    .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    let manifest =
        "[[routes]]\nmethod = \"POST\"\npath = \"/blobs/run\"\nauth = \"authenticated\"\n";
    let component = std::fs::read(root().join("target/wasm32-wasip2/guest/blobs_probe.wasm"))?;
    let form = Form::new()
        .part("manifest", Part::text(manifest).file_name("sluice.toml"))
        .part(
            "component",
            Part::bytes(component).file_name("component.wasm"),
        );
    let deployed = host
        .send(
            host.client
                .post(format!(
                    "{}/v1/tenants/goneco/functions/probe/versions",
                    host.admin
                ))
                .bearer_auth(&key)
                .multipart(form),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);

    let ops = json!({ "ops": [put_op("a", "text/plain", b"first"), put_op("b", "text/plain", b"second")] });
    let goneco = token("gus", "goneco", &[]);
    let stored = host.post("/goneco/blobs/run", Some(&goneco), &ops).await?;
    assert_eq!(stored.status, 200, "{}", stored.body);
    run(&host, json!([put_op("stays", "text/plain", b"acme's")])).await?;
    let objects = blob_dir(host.data(), "goneco").join("objects");
    assert_eq!(files_under(&objects)?.len(), 2, "{}", objects.display());

    let deleted = admin(
        &host,
        Method::DELETE,
        "/v1/tenants/goneco?force=true",
        k,
        None,
    )
    .await?;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let left = files_under(&blob_dir(host.data(), "goneco"))?;
    assert!(
        left.is_empty(),
        "the deleted tenant's blobs remain: {left:?}"
    );
    assert_eq!(blob_rows(&host, "goneco").await?, 0);
    let acme_objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(acme_objects.len(), 1, "{acme_objects:?}");
    Ok(())
}
