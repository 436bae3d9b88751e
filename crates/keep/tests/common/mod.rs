//! Helpers shared by the integration tests that drive the server with vaultrs.
#![allow(clippy::unwrap_used)]

use keep_test_support::lab::Lab;

/// A vaultrs client presenting the lab's admin certificate (a break-glass identity: no token).
pub fn admin_vaultrs(lab: &Lab) -> vaultrs::client::VaultClient {
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
    let mut pem = std::fs::read(&lab.files.admin_cert).unwrap();
    pem.extend(std::fs::read(&lab.files.admin_key).unwrap());
    let settings = VaultClientSettingsBuilder::default()
        .address(lab.url())
        .ca_certs(vec![lab.files.root_cert.display().to_string()])
        .identity(Some(reqwest::Identity::from_pem(&pem).unwrap()))
        .build()
        .unwrap();
    VaultClient::new(settings).unwrap()
}
