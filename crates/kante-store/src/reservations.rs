//! Shared records beyond the CRUD tables: reservations (compare-and-swap
//! uniqueness of names, id blocks and addresses) and trusted certificates.

use crate::state::ReservationKind;
use crate::table::Table;
use crate::{Result, Store, StoreError};

record! {
    /// A key of some kind, held by someone.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReservationRow {
        kind: String => "kind",
        key: String => "key",
        holder: String => "holder",
    }
    table: "reservations", entity: "Reservation", key: ["kind", "key"],
    mutable: ["holder"], order: "key", label: key,
}

record! {
    /// A trusted client certificate (LXD's `/1.0/certificates`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CertificateRow {
        fingerprint: String => "fingerprint",
        /// `client` or `metrics` (LXD also has `server`).
        kind: String => "type",
        name: String => "name",
        /// PEM.
        certificate: String => "certificate",
        restricted: bool => "restricted",
        description: String => "description",
        /// The projects a restricted certificate may reach.
        projects: Vec<String> => "projects",
    }
    table: "certificates", entity: "Certificate", key: ["fingerprint"],
    mutable: ["name", "type", "restricted", "description", "projects"], order: "fingerprint",
    label: fingerprint,
}

impl Store {
    /// Takes `key` for `holder` if nobody has it (see
    /// [`crate::SharedState::reserve`]): one insert under the key's
    /// uniqueness, so of two callers exactly one wins.
    pub fn reserve(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<()> {
        let row = ReservationRow {
            kind: kind.as_str().into(),
            key: key.into(),
            holder: holder.into(),
        };
        match Table::insert(&self.lock(), &row) {
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict(format!("{} {key:?}", kind.entity())))
            }
            other => other,
        }
    }

    /// Gives `key` up if `holder` has it.
    pub fn release(&self, kind: ReservationKind, key: &str, holder: &str) -> Result<bool> {
        let n = self.lock().execute(
            "DELETE FROM reservations WHERE kind = ?1 AND key = ?2 AND holder = ?3",
            [kind.as_str(), key, holder],
        )?;
        Ok(n > 0)
    }

    /// Moves `key` from `from` to `to`, if `from` has it.
    pub fn transfer(&self, kind: ReservationKind, key: &str, from: &str, to: &str) -> Result<bool> {
        let n = self.lock().execute(
            "UPDATE reservations SET holder = ?4 WHERE kind = ?1 AND key = ?2 AND holder = ?3",
            [kind.as_str(), key, from, to],
        )?;
        Ok(n > 0)
    }

    /// Every reservation of `kind`, in key order.
    pub fn reservations(&self, kind: ReservationKind) -> Result<Vec<ReservationRow>> {
        Table::list_where(&self.lock(), "kind", kind.as_str())
    }

    pub fn certificate_create(&self, row: &CertificateRow) -> Result<()> {
        Table::insert(&self.lock(), row)
    }

    pub fn certificate_get(&self, fingerprint: &str) -> Result<Option<CertificateRow>> {
        Table::get(&self.lock(), &[fingerprint])
    }

    pub fn certificate_list(&self) -> Result<Vec<CertificateRow>> {
        Table::list(&self.lock())
    }

    pub fn certificate_update(&self, row: &CertificateRow) -> Result<()> {
        Table::update(&self.lock(), row)
    }

    pub fn certificate_delete(&self, fingerprint: &str) -> Result<bool> {
        Table::<CertificateRow>::delete(&self.lock(), &[fingerprint])
    }

    /// Renames profile `old` in instance records only.
    pub fn instances_rename_profile(&self, old: &str, new: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        crate::rename_profile_refs::<crate::InstanceRow>(&tx, old, new, |r| &mut r.profiles)?;
        tx.commit()?;
        Ok(())
    }
}
