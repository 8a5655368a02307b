//! The user lifecycle commands: `user list|show|lock|unlock|remove|passwd|
//! groups|sign-out`, `user totp --off` and `session terminate`. Each one that changes something
//! is an audit event naming who did it. Locking, removing and signing out
//! end the user's sign-ins (the records first, so a session opening
//! meanwhile fails its second check) and then their live sessions, each of
//! which tells its client why.

use super::commands::{audit, rfc3339, store_err, AdminCtx};
use crate::audit::{Actor, Event};
use crate::identity;
use crate::store::block_on;

fn identity_err(e: identity::IdentityError) -> String {
    e.to_string()
}

/// `user list`: one line per user.
pub(super) fn list(ctx: &AdminCtx) -> Result<String, String> {
    let mut out = format!(
        "{:<24} {:<8} {:<16} {:<9} {:<6} GROUPS\n",
        "NAME", "STATE", "SIGNS IN WITH", "SIGN-INS", "CODES"
    );
    for u in block_on(ctx.store.users()).map_err(store_err)? {
        let sign_ins = block_on(ctx.store.sign_ins_of(&u.name))
            .map_err(store_err)?
            .len();
        out.push_str(&format!(
            "{:<24} {:<8} {:<16} {:<9} {:<6} {}\n",
            u.name,
            if u.locked.is_some() {
                "locked"
            } else {
                "active"
            },
            signs_in_with(&u),
            sign_ins,
            if u.totp_secret.is_some() { "on" } else { "off" },
            if u.groups.is_empty() {
                "-".to_owned()
            } else {
                u.groups.join(",")
            },
        ));
    }
    Ok(out.trim_end().to_owned())
}

/// `user show NAME`: the user's record (never the password hash or the
/// code secret) and their live sign-ins and sessions.
pub(super) fn show(ctx: &AdminCtx, name: &str) -> Result<String, String> {
    let u = block_on(identity::user(&ctx.store, name)).map_err(identity_err)?;
    let sign_ins = block_on(ctx.store.sign_ins_of(name))
        .map_err(store_err)?
        .len();
    let live = match &ctx.live {
        Some(l) => l.sessions_of(name).to_string(),
        None => "- (the relay is not running)".into(),
    };
    let signs_in_with = match &u.sso {
        Some(link) => format!("{} (subject {})", signs_in_with(&u), link.subject),
        None => signs_in_with(&u),
    };
    Ok(format!(
        "user:          {}\nstate:         {}\nsigns in with: {signs_in_with}\ngroups:        {}\ncreated:       {}\none-time codes: {}\nsign-ins:      {sign_ins}\nlive sessions: {live}",
        u.name,
        match u.locked {
            Some(t) => format!("locked since {}", rfc3339(t)),
            None => "active".into(),
        },
        if u.groups.is_empty() {
            "-".to_owned()
        } else {
            u.groups.join(",")
        },
        rfc3339(u.created),
        if u.totp_secret.is_some() { "on" } else { "off" },
    ))
}

/// How a user signs in: `password`, or `sso:PROVIDER`.
fn signs_in_with(u: &crate::store::UserRecord) -> String {
    match &u.sso {
        Some(link) => format!("sso:{}", link.provider),
        None => "password".to_owned(),
    }
}

/// Ends every sign-in of `name` and then their live sessions, telling
/// each client `why` (or that it was signed out); returns how many of
/// each. Flushed.
fn end_sign_ins(ctx: &AdminCtx, name: &str, why: Option<&str>) -> Result<(usize, usize), String> {
    let mut sign_ins = 0;
    for (id, _) in block_on(ctx.store.sign_ins_of(name)).map_err(store_err)? {
        if block_on(ctx.store.remove_sign_in_by_id(&id)).map_err(store_err)? {
            sign_ins += 1;
        }
    }
    block_on(ctx.store.flush()).map_err(store_err)?;
    // Every live session of the user, also those of sign-ins that expired
    // (and so are no longer listed) while their sessions stayed open.
    let sessions = ctx.live.as_ref().map_or(0, |l| l.end_user(name, why));
    Ok((sign_ins, sessions))
}

/// `user sign-out NAME`.
pub(super) fn sign_out(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    block_on(identity::user(&ctx.store, name)).map_err(identity_err)?;
    let (sign_ins, sessions) = end_sign_ins(ctx, name, None)?;
    audit(
        ctx,
        Event::SignOut {
            user: name.to_owned(),
            sign_ins,
            sessions,
            by_admin: true,
            by: Some(by.clone()),
        },
    )?;
    tracing::info!(user = %name, sign_ins, sessions, by = %by.describe(), "user signed out by an admin");
    Ok(format!(
        "user {name} signed out: {sign_ins} sign-in(s) ended, {sessions} live session(s) closed"
    ))
}

/// `user lock NAME` (`lock`) and `user unlock NAME`.
pub(super) fn lock(ctx: &AdminCtx, by: &Actor, name: &str, lock: bool) -> Result<String, String> {
    let changed = block_on(identity::set_locked(&ctx.store, name, lock)).map_err(identity_err)?;
    if !lock {
        if !changed {
            return Ok(format!("user {name} is not locked"));
        }
        audit(
            ctx,
            Event::UserUnlocked {
                user: name.to_owned(),
                by: by.clone(),
            },
        )?;
        tracing::info!(user = %name, by = %by.describe(), "user unlocked");
        return Ok(format!("user {name} unlocked: they may sign in again"));
    }
    // Also when it was locked already: whatever got through is ended.
    let (sign_ins, sessions) = end_sign_ins(ctx, name, Some(identity::LOCKED))?;
    audit(
        ctx,
        Event::UserLocked {
            user: name.to_owned(),
            sign_ins,
            sessions,
            by: by.clone(),
        },
    )?;
    tracing::info!(user = %name, sign_ins, sessions, by = %by.describe(), "user locked");
    Ok(format!(
        "user {name} locked{}: {sign_ins} sign-in(s) ended, {sessions} live session(s) closed; \
         sign-in and SSH certificates are refused until `user unlock {name}`",
        if changed { "" } else { " (already)" }
    ))
}

/// `user remove NAME`.
pub(super) fn remove(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    block_on(identity::user(&ctx.store, name)).map_err(identity_err)?;
    // The record first: a sign-in checked from now on finds no user.
    block_on(ctx.store.remove_user(name)).map_err(store_err)?;
    let (sign_ins, sessions) = end_sign_ins(ctx, name, Some(identity::REMOVED))?;
    audit(
        ctx,
        Event::UserRemoved {
            user: name.to_owned(),
            sign_ins,
            sessions,
            by: by.clone(),
        },
    )?;
    tracing::info!(user = %name, sign_ins, sessions, by = %by.describe(), "user removed");
    Ok(format!(
        "user {name} removed: {sign_ins} sign-in(s) ended, {sessions} live session(s) closed"
    ))
}

/// `user passwd NAME`: the password from standard input.
pub(super) fn passwd(
    ctx: &AdminCtx,
    by: &Actor,
    name: &str,
    password: &str,
) -> Result<String, String> {
    block_on(identity::set_password(&ctx.store, name, password)).map_err(identity_err)?;
    audit(
        ctx,
        Event::PasswordChanged {
            user: name.to_owned(),
            by: by.clone(),
        },
    )?;
    Ok(format!(
        "password of {name} changed; their sign-ins stay (end them with `user sign-out {name}`)"
    ))
}

/// `user groups NAME GROUP,...`: the groups policy sees from the next request on.
pub(super) fn groups(
    ctx: &AdminCtx,
    by: &Actor,
    name: &str,
    groups: &[String],
) -> Result<String, String> {
    let mut after = groups.to_vec();
    after.sort();
    after.dedup();
    let before = block_on(identity::set_groups(&ctx.store, name, &after)).map_err(identity_err)?;
    audit(
        ctx,
        Event::GroupsChanged {
            user: name.to_owned(),
            before,
            after: after.clone(),
            by: by.clone(),
        },
    )?;
    let sso = block_on(identity::user(&ctx.store, name))
        .ok()
        .and_then(|u| u.sso)
        .map(|l| {
            format!(
                " (until their next sign-in through {}, which sets the provider's groups)",
                l.provider
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "groups of {name}: {}{sso}",
        if after.is_empty() {
            "none".to_owned()
        } else {
            after.join(",")
        }
    ))
}

/// `user totp NAME --off`: sign-in no longer asks for a code (for a user
/// who lost their authenticator; they may set up a new one on their
/// account page).
pub(super) fn totp_off(ctx: &AdminCtx, by: &Actor, name: &str) -> Result<String, String> {
    let had = block_on(identity::reset_totp(&ctx.store, name)).map_err(identity_err)?;
    audit(
        ctx,
        Event::TotpReset {
            user: name.to_owned(),
            by: by.clone(),
        },
    )?;
    Ok(if had {
        format!("one-time codes of {name} turned off: sign-in asks for the password only")
    } else {
        format!("{name} had no one-time codes")
    })
}

/// What a session an admin ended tells its client.
pub const TERMINATED: &str = "this session was ended by an admin";

/// `session terminate STREAM`: ends one live session of a running relay.
pub(super) fn terminate(ctx: &AdminCtx, by: &Actor, stream: &str) -> Result<String, String> {
    let live = ctx
        .live
        .as_ref()
        .ok_or("the relay is not running, so no session is live")?;
    let (user, service) = live
        .terminate(stream, TERMINATED)
        .ok_or_else(|| format!("no live session has stream {stream}"))?;
    audit(
        ctx,
        Event::SessionTerminated {
            stream: stream.to_owned(),
            user: user.clone(),
            service: service.clone(),
            by: by.clone(),
        },
    )?;
    tracing::info!(%stream, %user, %service, by = %by.describe(), "session terminated by an admin");
    Ok(format!(
        "session of {user} to {service} (stream {stream}) ended"
    ))
}
