//! The ring bridge: makes a unix socket behave like `/dev/xen/xenbus` inside guest domain N.
//!
//! Connections to cxenstored's own socket are always dom0 and privileged. A guest talks to
//! xenstored through its ring page instead, and xenstored applies that domain's permissions,
//! quotas and watch semantics. The bridge plays the guest kernel: it owns domain N's ring page
//! (a file the fakexen shim maps into xenstored), is introduced to xenstored as dom0 does for a
//! new domain (`XS_INTRODUCE`), exchanges event-channel kicks with xenstored through unix
//! datagram sockets, and serves a unix stream socket that carries the same `xsd_sockmsg` byte
//! stream as `/dev/xen/xenbus`.
//!
//! Like the Linux xenbus device, it multiplexes any number of client connections onto the one
//! ring: request ids are rewritten (and restored in the replies), watch tokens are prefixed with
//! the client's id (and the prefix removed from the events, which are routed to that client
//! only), and a client's open transactions and watches are ended when it disconnects. Limits:
//! `XS_RESET_WATCHES` from one client resets every client's watches (as it would on real Xen for
//! the whole domain), and a request with a payload over 4096 bytes closes that client's
//! connection (the kernel device refuses such a write).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ring::GuestRing;
use crate::wire::{
    self, join_strings, split_strings, take_msg, Msg, XS_ERROR, XS_TRANSACTION_END,
    XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT,
};
use crate::{Error, Inner, Result};

/// Kick datagram meaning "a domain changed state" (VIRQ_DOM_EXC), see `shim/fakexen.c`.
pub(crate) const KICK_VIRQ: u32 = 0xffff_ffff;
/// Stop reading from clients while this many request bytes wait for ring space.
const TO_RING_HIGH_WATER: usize = 64 * 1024;
/// Safety-net wake-up of the bridge loop; every ring change is also signalled by a kick.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Shared between a [`GuestBridge`] handle, its thread and the daemon's domain registry.
#[derive(Debug)]
pub(crate) struct Control {
    wake_tx: UnixStream,
    stop: AtomicBool,
    dead: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Control {
    fn wake(&self) {
        // Non-blocking: a full pipe means the thread has wake-ups pending already.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// The domain died: close every client, refuse new ones, end the thread.
    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// A guest domain's xenstore connection, served as a unix socket. See the module docs.
///
/// Dropping it stops the bridge and, unless the domain was killed, releases the domain in
/// xenstored (`XS_RELEASE`).
#[derive(Debug)]
pub struct GuestBridge {
    domid: u32,
    socket: PathBuf,
    evtchn: PathBuf,
    ctl: Arc<Control>,
    thread: Option<JoinHandle<()>>,
    daemon: Arc<Inner>,
}

impl GuestBridge {
    /// Create domain `domid`'s ring page and event channel, introduce it to xenstored and start
    /// serving `<dir>/dom<domid>.xenbus`.
    pub(crate) fn start(daemon: Arc<Inner>, domid: u32) -> Result<GuestBridge> {
        let dir = daemon.dir();
        let ring_path = dir.join(format!("dom{domid}.ring"));
        let evtchn = dir.join(format!("dom{domid}.evtchn"));
        let socket = dir.join(format!("dom{domid}.xenbus"));
        let io = |what: String| move |e| Error::io(what, e);

        // A previous incarnation of this domid may have been killed in this daemon.
        match std::fs::remove_file(dir.join(format!("dom{domid}.dying"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("clearing dom{domid}.dying"), e)),
        }
        for stale in [&evtchn, &socket] {
            let _ = std::fs::remove_file(stale);
        }
        crate::check_socket_path(&socket)?;

        let ring = GuestRing::create(&ring_path)?;
        let evt = UnixDatagram::bind(&evtchn)
            .map_err(io(format!("binding event channel {}", evtchn.display())))?;
        evt.set_nonblocking(true)
            .map_err(io("event channel O_NONBLOCK".into()))?;
        let listener = UnixListener::bind(&socket)
            .map_err(io(format!("binding guest socket {}", socket.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(io("listener O_NONBLOCK".into()))?;
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(io("wake socketpair".into()))?;
        for s in [&wake_tx, &wake_rx] {
            s.set_nonblocking(true)
                .map_err(io("wake socket O_NONBLOCK".into()))?;
        }

        // As the toolstack does once the domain is built: XS_INTRODUCE(domid, mfn, port) as dom0.
        // xenstored maps the "grant" (our ring file) and resets the ring indices.
        let d = domid.to_string();
        wire::request(
            daemon.socket(),
            wire::XS_INTRODUCE,
            "INTRODUCE",
            &[d.as_bytes(), b"0", b"1"],
            crate::REQUEST_TIMEOUT,
        )?;

        let ctl = Arc::new(Control {
            wake_tx,
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        let mut bridge = Bridge {
            domid,
            ring,
            evtchn: evt,
            xenstored_evtchn: dir.join("xenstored.evtchn"),
            listener: Some(listener),
            wake_rx,
            ctl: Arc::clone(&ctl),
            clients: BTreeMap::new(),
            next_client: 1,
            pending: HashMap::new(),
            next_req: 1,
            to_ring: Vec::new(),
            from_ring: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("xs-bridge-dom{domid}"))
            .spawn(move || {
                if let Err(msg) = bridge.run() {
                    eprintln!("xenstored-harness: bridge for dom{domid} stopped: {msg}");
                    if let Ok(mut e) = bridge.ctl.error.lock() {
                        *e = Some(msg);
                    }
                }
                // Dropping `bridge` closes every client and the listener.
            })
            .map_err(io("spawning bridge thread".into()))?;
        daemon.register_bridge(domid, &ctl);
        Ok(GuestBridge {
            domid,
            socket,
            evtchn,
            ctl,
            thread: Some(thread),
            daemon,
        })
    }

    /// The guest domain's id.
    pub fn domid(&self) -> u32 {
        self.domid
    }

    /// The unix socket to connect to as this guest (what `/dev/xen/xenbus` is in the guest).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// A new connection of our xenstore client, as this guest domain.
    pub fn client(&self) -> Result<xen_store::Xs> {
        xen_store::Xs::open_unix(&self.socket).map_err(|source| Error::Client {
            path: self.socket.clone(),
            source,
        })
    }

    /// Run one of Debian's `xenstore-*` tools as this guest (`XENSTORED_PATH` set to the bridge
    /// socket): libxenstore then talks to xenstored as domain N, as it would inside the guest.
    pub fn tool<I, S>(&self, name: &str, args: I) -> Result<std::process::Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.daemon.run_tool(&self.socket, name, args)
    }

    /// Whether the domain was killed ([`crate::Xenstored::kill_domain`]).
    pub fn is_dead(&self) -> bool {
        self.ctl.dead.load(Ordering::SeqCst)
    }

    /// Why the bridge stopped on its own, if it did (ring corruption, xenstored gone).
    pub fn error(&self) -> Option<String> {
        self.ctl.error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for GuestBridge {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        self.ctl.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.is_dead() {
            let d = self.domid.to_string();
            // Best effort: the daemon may already be gone.
            let _ = wire::request(
                self.daemon.socket(),
                wire::XS_RELEASE,
                "RELEASE",
                &[d.as_bytes()],
                crate::REQUEST_TIMEOUT,
            );
        }
        self.daemon.unregister_bridge(self.domid);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.evtchn);
    }
}

/// One client connection.
struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Registered watches: (path, the client's own token).
    watches: HashSet<(Vec<u8>, Vec<u8>)>,
    /// Open transaction ids.
    txs: HashSet<u32>,
    closed: bool,
}

/// A request on the ring whose reply has not come back.
struct Pending {
    /// `None` for the bridge's own clean-up requests.
    client: Option<u32>,
    req_id: u32,
    ty: u32,
    tx_id: u32,
    watch: Option<(Vec<u8>, Vec<u8>)>,
}

struct Bridge {
    domid: u32,
    ring: GuestRing,
    evtchn: UnixDatagram,
    xenstored_evtchn: PathBuf,
    listener: Option<UnixListener>,
    wake_rx: UnixStream,
    ctl: Arc<Control>,
    clients: BTreeMap<u32, Client>,
    next_client: u32,
    pending: HashMap<u32, Pending>,
    next_req: u32,
    to_ring: Vec<u8>,
    from_ring: Vec<u8>,
}

/// `"<client id>/<token>"`: the token xenstored sees for a client's watch.
fn prefix_token(client: u32, token: &[u8]) -> Vec<u8> {
    let mut t = format!("{client}/").into_bytes();
    t.extend_from_slice(token);
    t
}

fn unprefix_token(token: &[u8]) -> Option<(u32, &[u8])> {
    let slash = token.iter().position(|&b| b == b'/')?;
    let id = std::str::from_utf8(token.get(..slash)?)
        .ok()?
        .parse()
        .ok()?;
    Some((id, token.get(slash + 1..)?))
}

impl Bridge {
    fn run(&mut self) -> std::result::Result<(), String> {
        loop {
            if self.ctl.stop.load(Ordering::SeqCst) || self.ctl.dead.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut progress = self.drain_wake();
            progress |= self.accept()?;
            progress |= self.read_clients();
            progress |= self.drain_kicks()?;
            progress |= self.push_ring()?;
            progress |= self.pull_ring()?;
            progress |= self.flush_clients();
            self.reap_clients();
            if !progress {
                self.wait()?;
            }
        }
    }

    fn drain_wake(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = self.wake_rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }

    fn accept(&mut self) -> std::result::Result<bool, String> {
        let Some(listener) = &self.listener else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(true)
                        .map_err(|e| format!("client O_NONBLOCK: {e}"))?;
                    let id = self.next_client;
                    self.next_client = self.next_client.wrapping_add(1).max(1);
                    self.clients.insert(
                        id,
                        Client {
                            stream,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                            watches: HashSet::new(),
                            txs: HashSet::new(),
                            closed: false,
                        },
                    );
                    any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("accept on the guest socket: {e}")),
            }
        }
    }

    fn read_clients(&mut self) -> bool {
        let mut any = false;
        let ids: Vec<u32> = self.clients.keys().copied().collect();
        for id in ids {
            if self.to_ring.len() >= TO_RING_HIGH_WATER {
                break;
            }
            let mut msgs = Vec::new();
            if let Some(c) = self.clients.get_mut(&id) {
                if c.closed {
                    continue;
                }
                let mut buf = [0u8; 8192];
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.closed = true;
                            break;
                        }
                        Ok(n) => {
                            c.inbuf.extend_from_slice(buf.get(..n).unwrap_or_default());
                            any = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            c.closed = true;
                            break;
                        }
                    }
                }
                loop {
                    match take_msg(&mut c.inbuf) {
                        Ok(Some(m)) => msgs.push(m),
                        Ok(None) => break,
                        Err(_) => {
                            // Like the kernel device's EINVAL: this stream cannot be framed.
                            c.closed = true;
                            c.inbuf.clear();
                            break;
                        }
                    }
                }
            }
            for m in msgs {
                self.forward_request(id, m);
            }
        }
        any
    }

    fn alloc_req_id(&mut self) -> u32 {
        loop {
            let id = self.next_req;
            self.next_req = self.next_req.wrapping_add(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Rewrite a client's request (req_id, watch token) and queue it for the ring.
    fn forward_request(&mut self, client: u32, m: Msg) {
        let ty = m.header.ty;
        let mut payload = m.payload;
        let mut watch = None;
        if ty == XS_WATCH || ty == XS_UNWATCH {
            if let [path, token, ..] = split_strings(&payload).as_slice() {
                let w = (path.to_vec(), token.to_vec());
                payload = join_strings(&[path, &prefix_token(client, token)]);
                watch = Some(w);
            }
            // Malformed: passed on unchanged, xenstored answers EINVAL.
        }
        self.queue(
            Some(client),
            m.header.req_id,
            ty,
            m.header.tx_id,
            payload,
            watch,
        );
    }

    fn queue(
        &mut self,
        client: Option<u32>,
        req_id: u32,
        ty: u32,
        tx_id: u32,
        payload: Vec<u8>,
        watch: Option<(Vec<u8>, Vec<u8>)>,
    ) {
        let id = self.alloc_req_id();
        self.pending.insert(
            id,
            Pending {
                client,
                req_id,
                ty,
                tx_id,
                watch,
            },
        );
        self.to_ring
            .extend_from_slice(&Msg::new(ty, id, tx_id, payload).to_bytes());
    }

    /// The bridge's own request ending a transaction of a client that went away.
    fn queue_tx_abort(&mut self, tx_id: u32) {
        self.queue(None, 0, XS_TRANSACTION_END, tx_id, b"F\0".to_vec(), None);
    }

    /// The bridge's own request removing a watch of a client that went away.
    fn queue_unwatch(&mut self, client: u32, path: &[u8], token: &[u8]) {
        let payload = join_strings(&[path, &prefix_token(client, token)]);
        self.queue(None, 0, XS_UNWATCH, 0, payload, None);
    }

    fn kick(&self) -> std::result::Result<(), String> {
        match self
            .evtchn
            .send_to(&self.domid.to_ne_bytes(), &self.xenstored_evtchn)
        {
            Ok(_) => Ok(()),
            // xenstored has unread kicks queued already; it will look at the ring.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(format!(
                "kicking xenstored at {}: {e}",
                self.xenstored_evtchn.display()
            )),
        }
    }

    fn drain_kicks(&mut self) -> std::result::Result<bool, String> {
        let mut buf = [0u8; 16];
        let mut any = false;
        loop {
            match self.evtchn.recv(&mut buf) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading event channel: {e}")),
            }
        }
    }

    fn push_ring(&mut self) -> std::result::Result<bool, String> {
        if self.to_ring.is_empty() {
            return Ok(false);
        }
        let n = self
            .ring
            .write_requests(&self.to_ring)
            .map_err(|e| format!("request ring: {e}"))?;
        if n == 0 {
            return Ok(false);
        }
        self.to_ring.drain(..n);
        self.kick()?;
        Ok(true)
    }

    fn pull_ring(&mut self) -> std::result::Result<bool, String> {
        let n = self
            .ring
            .read_responses(&mut self.from_ring)
            .map_err(|e| format!("response ring: {e}"))?;
        if n == 0 {
            return Ok(false);
        }
        self.kick()?;
        loop {
            match take_msg(&mut self.from_ring) {
                Ok(Some(m)) => self.route_reply(m),
                Ok(None) => return Ok(true),
                Err(e) => return Err(format!("xenstored sent a {}-byte payload", e.len)),
            }
        }
    }

    fn route_reply(&mut self, m: Msg) {
        if m.header.ty == XS_WATCH_EVENT {
            if let [path, token, ..] = split_strings(&m.payload).as_slice() {
                if let Some((id, orig)) = unprefix_token(token) {
                    if let Some(c) = self.clients.get_mut(&id) {
                        let ev = Msg::new(XS_WATCH_EVENT, 0, 0, join_strings(&[path, orig]));
                        c.outbuf.extend_from_slice(&ev.to_bytes());
                    }
                }
            }
            return;
        }
        let Some(p) = self.pending.remove(&m.header.req_id) else {
            eprintln!(
                "xenstored-harness: dom{}: reply with unknown req_id {} dropped",
                self.domid, m.header.req_id
            );
            return;
        };
        let ok = m.header.ty != XS_ERROR;
        let Some(id) = p.client else {
            return; // our own clean-up request
        };
        let Some(c) = self.clients.get_mut(&id).filter(|c| !c.closed) else {
            // The client left while this was in flight: undo what it just acquired.
            if ok && p.ty == XS_TRANSACTION_START {
                if let Some(tx) = parse_tx_id(&m.payload) {
                    self.queue_tx_abort(tx);
                }
            } else if ok && p.ty == XS_WATCH {
                if let Some((path, token)) = &p.watch {
                    self.queue_unwatch(id, path, token);
                }
            }
            return;
        };
        match p.ty {
            XS_TRANSACTION_START if ok => {
                if let Some(tx) = parse_tx_id(&m.payload) {
                    c.txs.insert(tx);
                }
            }
            // A failed commit (EAGAIN) ends the transaction too.
            XS_TRANSACTION_END => {
                c.txs.remove(&p.tx_id);
            }
            XS_WATCH if ok => {
                if let Some(w) = p.watch {
                    c.watches.insert(w);
                }
            }
            XS_UNWATCH if ok => {
                if let Some(w) = &p.watch {
                    c.watches.remove(w);
                }
            }
            _ => {}
        }
        let mut reply = m;
        reply.header.req_id = p.req_id;
        c.outbuf.extend_from_slice(&reply.to_bytes());
    }

    fn flush_clients(&mut self) -> bool {
        let mut any = false;
        for c in self.clients.values_mut() {
            while !c.closed && !c.outbuf.is_empty() {
                match c.stream.write(&c.outbuf) {
                    Ok(0) => c.closed = true,
                    Ok(n) => {
                        c.outbuf.drain(..n);
                        any = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => c.closed = true,
                }
            }
        }
        any
    }

    /// Forget closed clients, ending their transactions and watches in xenstored.
    fn reap_clients(&mut self) {
        let gone: Vec<u32> = self
            .clients
            .iter()
            .filter(|(_, c)| c.closed)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(c) = self.clients.remove(&id) {
                for tx in c.txs {
                    self.queue_tx_abort(tx);
                }
                for (path, token) in c.watches {
                    self.queue_unwatch(id, &path, &token);
                }
            }
        }
    }

    /// Sleep until a kick, a client, a wake-up or the idle timeout.
    fn wait(&mut self) -> std::result::Result<(), String> {
        let mut fds = vec![
            pollfd(self.wake_rx.as_raw_fd(), libc::POLLIN),
            pollfd(self.evtchn.as_raw_fd(), libc::POLLIN),
        ];
        if let Some(l) = &self.listener {
            fds.push(pollfd(l.as_raw_fd(), libc::POLLIN));
        }
        let reading = self.to_ring.len() < TO_RING_HIGH_WATER;
        for c in self.clients.values() {
            let mut ev = 0;
            if reading {
                ev |= libc::POLLIN;
            }
            if !c.outbuf.is_empty() {
                ev |= libc::POLLOUT;
            }
            fds.push(pollfd(c.stream.as_raw_fd(), ev));
        }
        let timeout = i32::try_from(IDLE_POLL.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
        // whose descriptors stay open for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        Ok(())
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The transaction id in a `TRANSACTION_START` reply (`"<decimal>\0"`).
fn parse_tx_id(payload: &[u8]) -> Option<u32> {
    let s = split_strings(payload).into_iter().next()?;
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_the_prefix() {
        let t = prefix_token(42, b"my/token");
        assert_eq!(t, b"42/my/token".to_vec());
        assert_eq!(unprefix_token(&t), Some((42, &b"my/token"[..])));
        assert_eq!(unprefix_token(b"x/y"), None);
        assert_eq!(unprefix_token(b"noslash"), None);
        assert_eq!(unprefix_token(b"7/"), Some((7, &b""[..])));
    }

    #[test]
    fn tx_ids_parse() {
        assert_eq!(parse_tx_id(b"17\0"), Some(17));
        assert_eq!(parse_tx_id(b"x\0"), None);
        assert_eq!(parse_tx_id(b""), None);
    }
}
