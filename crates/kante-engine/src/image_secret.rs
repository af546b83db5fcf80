//! Private images by secret (`POST /1.0/images/{fp}/secret`): a trusted
//! client asks the source for a one-time secret, an operation of class
//! `token` whose metadata carries it, and hands it to the server that
//! pulls; that server, untrusted here, may then read the image's record
//! and download its files once (`?secret=` on the image and its export).
//! The export uses the secret up; so do a cancel of the operation (LXD's
//! revoke) and its expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kante_api::image::Image;
use kante_api::operation::OperationClass;
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::{lock, Engine, Op};

/// How long an unused image secret lives (LXD's never expire; a secret is
/// asked for just before the copy that uses it).
const SECRET_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// A secret waiting for its download.
struct Pending {
    fingerprint: String,
    /// Ends the secret's operation as used.
    used: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The live image secrets, by secret.
#[derive(Default, Clone)]
pub(crate) struct ImageSecrets(Arc<Mutex<HashMap<String, Pending>>>);

impl ImageSecrets {
    /// Whether `secret` is live for the image `fingerprint`; `consume`
    /// uses it up.
    fn check(&self, secret: &str, fingerprint: &str, consume: bool) -> bool {
        let mut map = lock(&self.0);
        let Some(p) = map.get_mut(secret) else {
            return false;
        };
        if p.fingerprint != fingerprint {
            return false;
        }
        if consume {
            if let Some(tx) = p.used.take() {
                let _ = tx.send(());
            }
            map.remove(secret);
        }
        true
    }
}

impl Engine {
    /// Issues a one-time secret for the image `fp` (a full fingerprint or
    /// a unique prefix).
    pub(crate) async fn image_secret(&self, fp: &str) -> Result<Arc<Op>> {
        let image = self.image_get(fp).await?;
        let fingerprint = image.fingerprint;
        let secret = crate::util::random_hex(32);
        let mut resources = std::collections::BTreeMap::new();
        resources.insert("images".into(), vec![format!("/1.0/images/{fingerprint}")]);
        let op = self
            .ops
            .create(OperationClass::Token, "Executing operation", resources);
        op.set_metadata(json!({ "secret": secret }));
        op.set_cancellable();
        let (used_tx, used_rx) = tokio::sync::oneshot::channel();
        let secrets = self.remote.image_secrets.clone();
        lock(&secrets.0).insert(
            secret.clone(),
            Pending {
                fingerprint,
                used: Some(used_tx),
            },
        );
        let watched = op.clone();
        self.ops.run(op.clone(), async move {
            let result = tokio::select! {
                Ok(()) = used_rx => Ok(()),
                _ = watched.cancelled() => Err(EngineError::bad("Secret revoked")),
                _ = tokio::time::sleep(SECRET_LIFETIME) => Err(EngineError::bad("Secret has expired")),
            };
            lock(&secrets.0).remove(&secret);
            result
        });
        Ok(op)
    }

    /// The image `fp` as an untrusted caller may see it: a public one, or
    /// a private one whose live secret it gives (used up when
    /// `download`). Anything else is "not found", as a missing image is.
    pub(crate) async fn untrusted_image(
        &self,
        fp: &str,
        secret: Option<String>,
        download: bool,
    ) -> Result<Image> {
        let secret = secret.filter(|s| !s.is_empty());
        let Some(secret) = secret else {
            return self.public_image(fp).await;
        };
        // A secret names one image by its full fingerprint.
        let row = match self.shared.image_get(&fp.to_ascii_lowercase()).await? {
            Some(row) => row,
            None => return self.public_image(fp).await,
        };
        if row.public
            || self
                .remote
                .image_secrets
                .check(&secret, &row.fingerprint, download)
        {
            return Ok(self.render_image(&row).await);
        }
        tracing::info!(image = %row.fingerprint, "refused: wrong image secret");
        Err(EngineError::NotFound("Image not found".into()))
    }
}
