//! Catalogue-scope visibility: which offers a DSP caller may see.
//!
//! An offer restricts who sees it with the ODRL `assignee` of the offer (a participant id or
//! a party collection IRI). A caller sees such an offer when it is the assignee or, by
//! sluis-policy's `odrl:partOf` reading ([`sluis_policy::eval::World::is_part_of`]), a member
//! of it: its memberships are the claims of its certificate (the further URI SANs the
//! data-space CA certified beside the participant id). An offer without an assignee is
//! visible to every participant of the data space. An offer that does not parse is hidden
//! (fail closed). A dataset left without a visible offer is hidden too (the catalogue crate
//! does that part).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sluis_catalog::{CatalogStore, OfferVisibility, ScopeMarker};
use sluis_policy::Policy;
use sluis_policy::eval::World;

/// The claims of a verified caller's certificate: its URI SANs after the participant id.
/// The protocol listener puts them on every request of a mutual-TLS connection.
#[derive(Debug, Clone, Default)]
pub struct PeerClaims(pub Vec<String>);

impl PeerClaims {
    /// Reads the claims of a DER certificate (none when it does not parse).
    pub fn of(cert: &rustls_pki_types::CertificateDer<'_>) -> Self {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Self::default();
        };
        let Ok(Some(san)) = parsed.subject_alternative_name() else {
            return Self::default();
        };
        let uris = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            });
        // The first URI SAN is the participant id (see `tls::participant_id_of`).
        PeerClaims(uris.skip(1).take(64).collect())
    }
}

/// The verified DSP caller: its participant id and the claims of its certificate.
#[derive(Debug, Clone)]
pub struct Caller {
    world: World,
    participant_id: String,
}

impl Caller {
    /// A caller with the given certificate claims (IRIs of collections it belongs to).
    pub fn new(participant_id: &str, claims: &[String]) -> Self {
        let mut world = World::at(chrono::Utc::now());
        world.part_of = HashMap::from([(participant_id.to_string(), claims.to_vec())]);
        Caller {
            world,
            participant_id: participant_id.to_string(),
        }
    }

    /// A caller with the claims a request carries (none when the listener put none there).
    pub fn with_claims(participant_id: &str, claims: Option<axum::Extension<PeerClaims>>) -> Self {
        let claims = claims.map(|axum::Extension(c)| c.0).unwrap_or_default();
        Self::new(participant_id, &claims)
    }

    /// Whether the caller may see an offer with this (optional) assignee.
    fn may_see(&self, assignee: Option<&str>) -> bool {
        assignee.is_none_or(|a| self.world.is_part_of(&self.participant_id, a))
    }
}

impl OfferVisibility for Caller {
    fn is_visible(&self, offer: &Value) -> bool {
        match Policy::from_json(offer) {
            Ok(policy) => self.may_see(policy.assignee()),
            Err(_) => false,
        }
    }
}

/// Marks the offers that carry catalogue-scope constraints (an `assignee`), so that only
/// those are evaluated per caller.
pub fn scope_marker() -> ScopeMarker {
    Arc::new(|offer: &Value| offer.get("assignee").is_some())
}

/// Tells the catalogue which offers carry catalogue-scope constraints: the marker, and the
/// RDF property (`odrl:assignee`) that lets it find their datasets through the graph index.
pub fn install(catalog: &CatalogStore) -> Result<(), sluis_catalog::CatalogError> {
    catalog.set_scope_marker(scope_marker())?;
    catalog.set_scope_property("http://www.w3.org/ns/odrl/2/assignee")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(assignee: Option<&str>) -> Value {
        let mut o = json!({"@id": "urn:o", "@type": "Offer", "permission": [{"action": "use"}]});
        if let Some(a) = assignee {
            o["assignee"] = json!(a);
        }
        o
    }

    #[test]
    fn assignee_and_claims_decide() {
        let caller = Caller::new("did:web:a.example", &["urn:group:energy".into()]);
        assert!(caller.is_visible(&offer(None)));
        assert!(caller.is_visible(&offer(Some("did:web:a.example"))));
        assert!(caller.is_visible(&offer(Some("urn:group:energy"))));
        assert!(!caller.is_visible(&offer(Some("did:web:b.example"))));
        assert!(!caller.is_visible(&json!({"not": "an offer"})));
        let marker = scope_marker();
        assert!((*marker)(&offer(Some("x:y"))));
        assert!(!(*marker)(&offer(None)));
    }
}
