//! Single sign-on for assessors with OpenID Connect: the authorization code flow with PKCE
//! (S256), a nonce and a state bound to the browser (the web layer's cookie).
//!
//! [`Provider::begin`] makes the state, nonce and code verifier, keeps them (at most
//! [`MAX_PENDING`], each for [`PENDING_LIFETIME`]) and answers the provider's authorization URL;
//! [`Provider::finish`] takes the state back (once), trades the code for tokens at the token
//! endpoint (client_secret_basic, the verifier) and checks the ID token: its signature (RS256 or
//! ES256, by the provider's published keys), issuer, audience, expiry and nonce, and that its
//! e-mail is verified. Whether that e-mail may sign in is [`Settings::allows`]. The provider's
//! discovery document and keys are read when first needed and kept; keys are read again when a
//! token names one we do not know.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::Method;
use serde::Deserialize;
use sha2::Digest;

use crate::http_client::{self, form_encode, Outgoing, Url};

/// Logins started and not finished that are kept at once; more are refused until some expire.
pub const MAX_PENDING: usize = 10_000;
/// Logins started and not finished that one client address may hold.
pub const MAX_PENDING_PER_CLIENT: usize = 20;
/// How long a started login may take at the provider.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// The most a provider's answer may hold.
const ANSWER_LIMIT: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew allowed between us and the provider.
const LEEWAY: i64 = 60;

/// `oidc: {issuer, client_id, client_secret, allowed_domains, allowed_emails}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// E-mail domains whose accounts may sign in (lower case).
    pub allowed_domains: Vec<String>,
    /// Single addresses that may sign in (lower case).
    pub allowed_emails: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("allowed_domains", &self.allowed_domains)
            .field("allowed_emails", &self.allowed_emails)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Checks the settings together; the error names the key.
    pub fn new(issuer: &str, client_id: &str, client_secret: &str, domains: Vec<String>, emails: Vec<String>) -> Result<Settings, (&'static str, String)> {
        let url = Url::parse(issuer.trim()).map_err(|e| ("oidc.issuer", e.to_string()))?;
        if !url.tls && !url.is_loopback() {
            return Err(("oidc.issuer", format!("{issuer:?}: a provider must be reached over https:// (plain http only on this host)")));
        }
        if client_id.trim().is_empty() {
            return Err(("oidc.client_id", "required: the client id the provider gave this server".into()));
        }
        if client_secret.is_empty() {
            return Err(("oidc.client_secret", "required: the client secret the provider gave this server".into()));
        }
        let clean = |list: Vec<String>| list.into_iter().map(|s| s.trim().trim_start_matches('@').to_lowercase()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let (allowed_domains, allowed_emails) = (clean(domains), clean(emails));
        if allowed_domains.is_empty() && allowed_emails.is_empty() {
            return Err((
                "oidc.allowed_domains",
                "say who may sign in: allowed_domains (e.g. [example.com]) or allowed_emails; a provider alone would admit every account it knows".into(),
            ));
        }
        if let Some(bad) = allowed_emails.iter().find(|e| !e.contains('@')) {
            return Err(("oidc.allowed_emails", format!("{bad:?} is not an e-mail address")));
        }
        Ok(Settings {
            issuer: issuer.trim().trim_end_matches('/').to_string(),
            client_id: client_id.trim().to_string(),
            client_secret: client_secret.to_string(),
            allowed_domains,
            allowed_emails,
        })
    }

    /// Whether `email` may sign in: listed itself, or in a listed domain.
    pub fn allows(&self, email: &str) -> bool {
        let email = email.trim().to_lowercase();
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        self.allowed_emails.contains(&email) || (!domain.is_empty() && self.allowed_domains.iter().any(|d| d == domain))
    }
}

/// Why a sign-in did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider's {what}")]
    Request { what: &'static str, source: http_client::HttpError },
    #[error("the provider's {what} answered {status}: {text}")]
    Status { what: &'static str, status: u16, text: String },
    #[error("the provider's {what} is not what OpenID Connect describes: {message}")]
    Malformed { what: &'static str, message: String },
    #[error("this sign-in was not started here, was finished already or took longer than {} minutes: start again", PENDING_LIFETIME.as_secs() / 60)]
    UnknownState,
    #[error("too many sign-ins are under way; try again in a few minutes")]
    Busy,
    #[error("the ID token is refused: {0}")]
    Token(String),
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

struct Pending {
    verifier: String,
    nonce: String,
    started: Instant,
    client: std::net::IpAddr,
}

/// The provider as this server knows it.
pub struct Provider {
    pub settings: Settings,
    tls: Arc<rustls::ClientConfig>,
    metadata: tokio::sync::Mutex<Option<Metadata>>,
    keys: tokio::sync::Mutex<Option<Jwks>>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

impl Provider {
    pub fn new(settings: Settings, tls: Arc<rustls::ClientConfig>) -> Provider {
        Provider { settings, tls, metadata: tokio::sync::Mutex::new(None), keys: tokio::sync::Mutex::new(None), pending: Mutex::new(HashMap::new()) }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, what: &'static str, url: &str) -> Result<T, OidcError> {
        let outgoing = Outgoing { method: Method::GET, url, headers: vec![], body: None, limit: ANSWER_LIMIT, timeout: TIMEOUT };
        let answer = http_client::send(&self.tls, outgoing).await.map_err(|source| OidcError::Request { what, source })?;
        if answer.status != 200 {
            return Err(OidcError::Status { what, status: answer.status, text: String::from_utf8_lossy(&answer.body).chars().take(200).collect() });
        }
        serde_json::from_slice(&answer.body).map_err(|e| OidcError::Malformed { what, message: e.to_string() })
    }

    async fn metadata(&self) -> Result<Metadata, OidcError> {
        let mut held = self.metadata.lock().await;
        if let Some(m) = held.as_ref() {
            return Ok(m.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let m: Metadata = self.get_json("discovery document", &url).await?;
        if m.issuer.trim_end_matches('/') != self.settings.issuer {
            return Err(OidcError::Malformed { what: "discovery document", message: format!("its issuer is {:?}, not {:?}", m.issuer, self.settings.issuer) });
        }
        *held = Some(m.clone());
        Ok(m)
    }

    /// Starts a sign-in for the browser at `client`: the state (for its cookie) and the URL to
    /// send it to.
    pub async fn begin(&self, redirect_uri: &str, client: std::net::IpAddr) -> Result<(String, String), OidcError> {
        let metadata = self.metadata().await?;
        let state = b64(&crate::secret::random_bytes::<24>());
        let nonce = b64(&crate::secret::random_bytes::<24>());
        let verifier = b64(&crate::secret::random_bytes::<32>());
        let challenge = b64(&sha2::Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = self.pending.lock().unwrap();
            pending.retain(|_, p| p.started.elapsed() < PENDING_LIFETIME);
            if pending.len() >= MAX_PENDING || pending.values().filter(|p| p.client == client).count() >= MAX_PENDING_PER_CLIENT {
                return Err(OidcError::Busy);
            }
            pending.insert(state.clone(), Pending { verifier, nonce: nonce.clone(), started: Instant::now(), client });
        }
        let query = form_encode(&[
            ("response_type", "code"),
            ("client_id", &self.settings.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email profile"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let separator = if metadata.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok((state, format!("{}{separator}{query}", metadata.authorization_endpoint)))
    }

    /// Finishes a sign-in: `state` must be one [`Provider::begin`] made (it is used up), and the
    /// code is traded for an ID token, which is checked.
    pub async fn finish(&self, state: &str, code: &str, redirect_uri: &str, now: i64) -> Result<Identity, OidcError> {
        let pending = {
            let mut all = self.pending.lock().unwrap();
            all.remove(state).filter(|p| p.started.elapsed() < PENDING_LIFETIME).ok_or(OidcError::UnknownState)?
        };
        let metadata = self.metadata().await?;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                http_client::percent_encode(&self.settings.client_id),
                http_client::percent_encode(&self.settings.client_secret)
            ))
        );
        let body = form_encode(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", &pending.verifier)]);
        let outgoing = Outgoing {
            method: Method::POST,
            url: &metadata.token_endpoint,
            headers: vec![(hyper::header::AUTHORIZATION, basic), (hyper::header::ACCEPT, "application/json".into())],
            body: Some(("application/x-www-form-urlencoded", body.into_bytes())),
            limit: ANSWER_LIMIT,
            timeout: TIMEOUT,
        };
        let what = "token endpoint";
        let answer = http_client::send(&self.tls, outgoing).await.map_err(|source| OidcError::Request { what, source })?;
        let tokens: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status != 200 {
            let text = [tokens["error"].as_str(), tokens["error_description"].as_str()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return Err(OidcError::Status { what, status: answer.status, text });
        }
        let id_token = tokens["id_token"].as_str().ok_or(OidcError::Malformed { what, message: "no id_token in its answer".into() })?;
        let claims = self.verify(id_token, &metadata).await?;
        check_claims(&claims, &metadata.issuer, &self.settings.client_id, &pending.nonce, now)
    }

    /// The claims of `token` once its signature holds under one of the provider's keys.
    async fn verify(&self, token: &str, metadata: &Metadata) -> Result<serde_json::Value, OidcError> {
        let kid = header_of(token)?.1;
        for fresh in [false, true] {
            let keys = {
                let mut held = self.keys.lock().await;
                if fresh || held.is_none() {
                    *held = Some(self.get_json("keys (jwks_uri)", &metadata.jwks_uri).await?);
                }
                held.clone().expect("just read")
            };
            match verify_with(token, &keys, kid.as_deref()) {
                Err(KeyMiss) if !fresh => continue,
                Err(KeyMiss) => return Err(OidcError::Token("signed with a key the provider does not publish".into())),
                Ok(result) => return result,
            }
        }
        unreachable!("the second pass returns")
    }
}

/// No key of the set fits the token (read the keys again, once).
struct KeyMiss;

/// (alg, kid) of a JWT's header.
fn header_of(token: &str) -> Result<(String, Option<String>), OidcError> {
    let bad = |m: &str| OidcError::Token(m.to_string());
    let header = token.split('.').next().and_then(unb64).ok_or_else(|| bad("not a JWT"))?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| bad("its header is not JSON"))?;
    let alg = header["alg"].as_str().ok_or_else(|| bad("no alg in its header"))?.to_string();
    Ok((alg, header["kid"].as_str().map(String::from)))
}

/// Checks the signature of `token` under `keys`; the claims when it holds.
fn verify_with(token: &str, keys: &Jwks, kid: Option<&str>) -> Result<Result<serde_json::Value, OidcError>, KeyMiss> {
    let bad = |m: &str| Ok(Err(OidcError::Token(m.to_string())));
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return bad("not a signed JWT (three parts)");
    }
    let (alg, _) = match header_of(token) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let kty = match alg.as_str() {
        "RS256" => "RSA",
        "ES256" => "EC",
        other => return bad(&format!("signed with {other}; RS256 and ES256 are accepted")),
    };
    let candidates: Vec<&Jwk> =
        keys.keys.iter().filter(|k| k.kty == kty && k.usage.as_deref().unwrap_or("sig") == "sig" && (kid.is_none() || k.kid.as_deref() == kid)).collect();
    if candidates.is_empty() {
        return Err(KeyMiss);
    }
    let Some(signature) = unb64(parts[2]) else { return bad("its signature is not base64url") };
    let message = format!("{}.{}", parts[0], parts[1]);
    let holds = candidates.iter().any(|key| match alg.as_str() {
        "RS256" => match (key.n.as_deref().and_then(unb64), key.e.as_deref().and_then(unb64)) {
            (Some(n), Some(e)) => ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
                .is_ok(),
            _ => false,
        },
        _ => match (key.crv.as_deref(), key.x.as_deref().and_then(unb64), key.y.as_deref().and_then(unb64)) {
            (Some("P-256"), Some(x), Some(y)) => {
                let point = [&[4u8][..], &x, &y].concat();
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point).verify(message.as_bytes(), &signature).is_ok()
            }
            _ => false,
        },
    });
    if !holds {
        return bad("its signature does not hold");
    }
    let Some(payload) = unb64(parts[1]) else { return bad("its claims are not base64url") };
    match serde_json::from_slice(&payload) {
        Ok(claims) => Ok(Ok(claims)),
        Err(_) => bad("its claims are not JSON"),
    }
}

/// Issuer, audience, expiry, nonce and a verified e-mail.
fn check_claims(claims: &serde_json::Value, issuer: &str, client_id: &str, nonce: &str, now: i64) -> Result<Identity, OidcError> {
    let refuse = |m: String| Err(OidcError::Token(m));
    if claims["iss"].as_str().map(|i| i.trim_end_matches('/')) != Some(issuer.trim_end_matches('/')) {
        return refuse(format!("issued by {}, not {issuer}", claims["iss"]));
    }
    let audience: Vec<&str> = match &claims["aud"] {
        serde_json::Value::String(one) => vec![one.as_str()],
        serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str()).collect(),
        _ => vec![],
    };
    if !audience.contains(&client_id) {
        return refuse("issued for another client".into());
    }
    if audience.len() > 1 && claims["azp"].as_str().is_some_and(|azp| azp != client_id) {
        return refuse("authorized for another party (azp)".into());
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp + LEEWAY > now => {}
        _ => return refuse("expired".into()),
    }
    if claims["iat"].as_i64().is_some_and(|iat| iat > now + LEEWAY) {
        return refuse("issued in the future".into());
    }
    if claims["nonce"].as_str() != Some(nonce) {
        return refuse("its nonce is not the one this sign-in sent".into());
    }
    let Some(email) = claims["email"].as_str().filter(|e| e.contains('@')) else {
        return refuse("it holds no e-mail address (the provider must release the email scope)".into());
    };
    if claims["email_verified"].as_bool() == Some(false) || claims["email_verified"].as_str() == Some("false") {
        return refuse(format!("the provider has not verified {email}"));
    }
    let subject = claims["sub"].as_str().unwrap_or("").to_string();
    Ok(Identity { email: email.to_lowercase(), subject })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn settings() -> Settings {
        Settings::new("https://login.example.com/", "takehome", "s3cret", vec!["Example.com".into()], vec!["guest@other.org".into()]).unwrap()
    }

    #[test]
    fn settings_are_checked_and_decide_who_may_sign_in() {
        let s = settings();
        assert_eq!(s.issuer, "https://login.example.com");
        assert!(s.allows("Ada@EXAMPLE.com") && s.allows("guest@other.org"));
        assert!(!s.allows("eve@other.org") && !s.allows("ada@example.com.evil.org") && !s.allows("example.com"));
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(Settings::new("http://login.example.com", "c", "s", vec!["a.b".into()], vec![]).unwrap_err().0, "oidc.issuer");
        assert!(Settings::new("http://127.0.0.1:9400", "c", "s", vec!["a.b".into()], vec![]).is_ok());
        assert_eq!(Settings::new("https://l.example", "c", "s", vec![], vec![]).unwrap_err().0, "oidc.allowed_domains");
        assert_eq!(Settings::new("https://l.example", "", "s", vec!["a.b".into()], vec![]).unwrap_err().0, "oidc.client_id");
    }

    /// An ES256 token made here: its signature holds under its key and under no other; a changed
    /// claim breaks it; each claim is checked.
    #[test]
    fn id_tokens_are_verified_by_signature_then_by_claims() {
        let rng = ring::rand::SystemRandom::new();
        let make_key = || {
            let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
        };
        let (key, other) = (make_key(), make_key());
        let jwk = |pair: &ring::signature::EcdsaKeyPair, kid: &str| {
            let point = pair.public_key().as_ref();
            Jwk {
                kty: "EC".into(),
                kid: Some(kid.into()),
                usage: None,
                n: None,
                e: None,
                crv: Some("P-256".into()),
                x: Some(b64(&point[1..33])),
                y: Some(b64(&point[33..])),
            }
        };
        let sign = |pair: &ring::signature::EcdsaKeyPair, claims: &serde_json::Value| {
            let head = b64(br#"{"alg":"ES256","kid":"k1"}"#);
            let body = b64(claims.to_string().as_bytes());
            let signature = pair.sign(&rng, format!("{head}.{body}").as_bytes()).unwrap();
            format!("{head}.{body}.{}", b64(signature.as_ref()))
        };
        let now = 1_800_000_000;
        let claims = serde_json::json!({ "iss": "https://login.example.com", "aud": "takehome", "exp": now + 300, "iat": now, "nonce": "n1", "sub": "u1", "email": "Ada@example.com", "email_verified": true });
        let keys = Jwks { keys: vec![jwk(&key, "k1")] };
        let token = sign(&key, &claims);
        let verified = verify_with(&token, &keys, Some("k1")).ok().unwrap().unwrap();
        assert_eq!(
            check_claims(&verified, "https://login.example.com", "takehome", "n1", now).unwrap(),
            Identity { email: "ada@example.com".into(), subject: "u1".into() }
        );
        // Another key's signature, a changed claim, an unknown key id.
        assert!(verify_with(&sign(&other, &claims), &keys, Some("k1")).ok().unwrap().is_err());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(claims.to_string().replace("Ada@", "Eve@").as_bytes()), parts[2]);
        assert!(verify_with(&forged, &keys, Some("k1")).ok().unwrap().is_err(), "a changed claim breaks the signature");
        assert!(verify_with(&token, &keys, Some("k2")).is_err(), "an unknown key id asks for the keys again");
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]);
        assert!(verify_with(&none, &keys, None).ok().unwrap().is_err(), "alg none is refused");
        // Each claim.
        let with = |key: &str, value: serde_json::Value| {
            let mut c = claims.clone();
            c[key] = value;
            check_claims(&c, "https://login.example.com", "takehome", "n1", now).unwrap_err().to_string()
        };
        assert!(with("iss", "https://evil.example".into()).contains("issued by"));
        assert!(with("aud", "someone-else".into()).contains("another client"));
        assert!(with("exp", (now - 120).into()).contains("expired"));
        assert!(with("nonce", "n2".into()).contains("nonce"));
        assert!(with("email_verified", false.into()).contains("not verified"));
        assert!(with("email", serde_json::Value::Null).contains("no e-mail"));
    }
}
