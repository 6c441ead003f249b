//! Address allocation that reads and writes the reference CNI `host-local` plugin's store, so
//! a runtime can hand out addresses in-process and stay interchangeable with that plugin:
//! leases made by either are seen, and released, by the other.
//!
//! The store is the plugin's (containernetworking-plugins `host-local`, `backend/disk`):
//!
//! * a directory per network, `DATA_DIR/NETWORK` (`/var/lib/cni/networks/NETWORK` by default),
//!   mode 0755;
//! * one file per leased address, named by the address (`10.88.0.5`, `fd00:88::5`), holding
//!   `CONTAINER_ID\r\nIFNAME`, created with `O_EXCL` — that creation *is* the reservation;
//! * `last_reserved_ip.N`: the address last handed out from range set `N` (the next search
//!   starts after it: round robin, so a released address is not reused at once);
//! * `lock`: every allocation and release holds an exclusive `flock` on it, as the plugin does.
//!
//! Allocation follows the plugin's order exactly: per range set, from the address after the last
//! reserved one (or the first range's start), through each range in turn and around, skipping
//! each range's gateway; the first address whose file can be created is the lease. A range's
//! start defaults to the subnet's first address after the network address, its end to the
//! last (IPv4: the one before the broadcast address), its gateway to the first. Errors say what
//! the plugin says (`no IP addresses available in range set: 10.1.0.1-10.1.0.2`).
//!
//! # Examples
//!
//! ```no_run
//! use netns_kit::ipam::{HostLocal, IpRange};
//!
//! let ipam = HostLocal::new(
//!     "/var/lib/cni/networks",
//!     "podman",
//!     vec![vec![IpRange::new("10.88.0.0/16")?], vec![IpRange::new("fd00:88::/64")?]],
//! )?;
//! let leases = ipam.allocate("container-1", "eth0", &[])?; // one IPv4, one IPv6
//! println!("{} via {}", leases[0].address, leases[0].gateway);
//! ipam.release("container-1", "eth0")?;
//! # Ok::<(), netns_kit::Error>(())
//! ```

use std::{
    fs,
    io::{ErrorKind, Write},
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    ip::IntoIpNetwork,
};

/// The plugin's default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

const LAST_RESERVED: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";

/// One range of a range set: a subnet and, within it, the addresses handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    subnet: IpNetwork,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

impl IpRange {
    /// The whole of `subnet` (which must be its network address, `10.88.0.0/16`): start at
    /// its first address after the network address, end at its last (IPv4: before the
    /// broadcast address), gateway the first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a subnet with host bits set or too small to allocate from
    /// (`/31`, `/32`, `/127`, `/128`).
    pub fn new(subnet: impl IntoIpNetwork) -> Result<IpRange> {
        let subnet = subnet.into_ip_network()?;
        let object = || format!("range {subnet}");
        let bits = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > bits - 2 {
            return Err(Error::invalid(
                object(),
                format!("Network {subnet} too small to allocate from"),
            ));
        }
        if subnet.ip() != subnet.network() {
            return Err(Error::invalid(
                object(),
                format!(
                    "Network has host bits set. For a subnet mask of length {} the network \
                     address is {}",
                    subnet.prefix(),
                    subnet.network()
                ),
            ));
        }
        if let IpNetwork::V6(v6) = subnet {
            if v6.ip().to_ipv4_mapped().is_some() {
                return Err(Error::invalid(object(), "an IPv4-mapped subnet"));
            }
        }
        let v6 = subnet.is_ipv6();
        let first = from_u128(to_u128(subnet.network()) + 1, v6);
        let last = match subnet {
            IpNetwork::V4(n) => IpAddr::V4((u32::from(n.broadcast()) - 1).into()),
            IpNetwork::V6(n) => {
                IpAddr::V6((u128::from(n.network()) | (u128::MAX >> n.prefix())).into())
            }
        };
        Ok(IpRange {
            subnet,
            start: first,
            end: last,
            gateway: first,
        })
    }

    fn check_inside(&self, ip: IpAddr, what: &str) -> Result<()> {
        if !self.subnet.contains(ip) || ip.is_ipv4() != self.subnet.is_ipv4() {
            return Err(Error::invalid(
                format!("range {}", self.subnet),
                format!("{what} {ip} not in network {}", self.subnet),
            ));
        }
        Ok(())
    }

    /// The first address handed out (`rangeStart`).
    pub fn start(mut self, ip: IpAddr) -> Result<IpRange> {
        self.check_inside(ip, "RangeStart")?;
        self.start = ip;
        self.check_order()?;
        Ok(self)
    }

    /// The last address handed out (`rangeEnd`).
    pub fn end(mut self, ip: IpAddr) -> Result<IpRange> {
        self.check_inside(ip, "RangeEnd")?;
        self.end = ip;
        self.check_order()?;
        Ok(self)
    }

    /// The gateway (`gateway`): never handed out, and the leases' gateway.
    pub fn gateway(mut self, ip: IpAddr) -> Result<IpRange> {
        self.check_inside(ip, "gateway")?;
        self.gateway = ip;
        Ok(self)
    }

    fn check_order(&self) -> Result<()> {
        if to_u128(self.start) > to_u128(self.end) {
            return Err(Error::invalid(
                format!("range {}", self.subnet),
                format!("RangeStart {} is after RangeEnd {}", self.start, self.end),
            ));
        }
        Ok(())
    }

    /// The subnet.
    pub fn subnet(&self) -> IpNetwork {
        self.subnet
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.subnet.is_ipv4()
            && to_u128(self.start) <= to_u128(ip)
            && to_u128(ip) <= to_u128(self.end)
    }

    fn overlaps(&self, other: &IpRange) -> bool {
        self.subnet.is_ipv4() == other.subnet.is_ipv4()
            && to_u128(self.start) <= to_u128(other.end)
            && to_u128(other.start) <= to_u128(self.end)
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

fn set_string(set: &[IpRange]) -> String {
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An address handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The address, with its range's prefix length.
    pub address: IpNetwork,
    /// Its range's gateway.
    pub gateway: IpAddr,
    /// The index of the range set it came from.
    pub range_set: usize,
}

/// A `host-local` store for one network; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct HostLocal {
    dir: PathBuf,
    sets: Vec<Vec<IpRange>>,
}

/// The exclusive `flock` on the store's `lock` file, released when dropped.
struct Locked(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

impl HostLocal {
    /// The store of network `network` under `data_dir`, handing out one address per range set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no range sets, an empty one, one mixing IPv4 and IPv6,
    /// overlapping ranges, or a network name that is no single path component.
    pub fn new(
        data_dir: impl AsRef<Path>,
        network: &str,
        range_sets: Vec<Vec<IpRange>>,
    ) -> Result<HostLocal> {
        let object = format!("host-local network {network:?}");
        if network.is_empty() || network == "." || network == ".." || network.contains(['/', '\0'])
        {
            return Err(Error::invalid(
                object,
                "the network name must be one path component",
            ));
        }
        if range_sets.is_empty() || range_sets.iter().any(Vec::is_empty) {
            return Err(Error::invalid(object, "every range set needs a range"));
        }
        let all: Vec<&IpRange> = range_sets.iter().flatten().collect();
        for set in &range_sets {
            if set
                .iter()
                .any(|r| r.subnet.is_ipv4() != set[0].subnet.is_ipv4())
            {
                return Err(Error::invalid(
                    object,
                    "mixed address families in a range set",
                ));
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[..i] {
                if a.overlaps(b) {
                    return Err(Error::invalid(
                        object,
                        format!("subnets {} and {} overlap", b.subnet, a.subnet),
                    ));
                }
            }
        }
        Ok(HostLocal {
            dir: data_dir.as_ref().join(network),
            sets: range_sets,
        })
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::os(op, format!("host-local store {}", self.dir.display()), e)
    }

    fn lock(&self) -> Result<Locked> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|e| self.io("create", e))?;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join("lock"))
            .map_err(|e| self.io("lock", e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map(Locked)
            .map_err(|(_, e)| self.io("lock", e.into()))
    }

    /// Reserves `ip` for `id`/`ifname` (false if taken) and records it as range set `set`'s
    /// last reserved address.
    fn reserve(&self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let mut file = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.io("reserve", e)),
        };
        if let Err(e) = file.write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(self.io("reserve", e));
        }
        fs::write(
            self.dir.join(format!("{LAST_RESERVED}{set}")),
            ip.to_string(),
        )
        .map_err(|e| self.io("reserve", e))?;
        Ok(true)
    }

    /// Every lease in the store: address, container id, interface name (the plugin's older
    /// files, with an id only, give an empty interface name).
    pub fn leases(&self) -> Result<Vec<(IpAddr, String, String)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("read", e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let text = text.trim();
            let (id, ifname) = text.split_once(LINE_BREAK).unwrap_or((text, ""));
            out.push((ip, id.to_owned(), ifname.to_owned()));
        }
        Ok(out)
    }

    /// Hands out one address per range set to container `id`'s interface `ifname`; an address
    /// in `requested` is taken from the range set that holds it. All or nothing: on an error,
    /// what this call reserved is released.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when a range set has no free address or a requested one is taken;
    /// [`Error::InvalidInput`] for a requested address in no range set, a gateway, or a second
    /// allocation for the same container and interface; an OS error from the store.
    pub fn allocate(&self, id: &str, ifname: &str, requested: &[IpAddr]) -> Result<Vec<Lease>> {
        let _lock = self.lock()?;
        let mut leases = Vec::new();
        let result = self.allocate_locked(id, ifname, requested, &mut leases);
        if result.is_err() {
            for lease in &leases {
                let _ = fs::remove_file(self.dir.join(lease.address.ip().to_string()));
            }
        }
        result.map(|()| leases)
    }

    fn allocate_locked(
        &self,
        id: &str,
        ifname: &str,
        requested: &[IpAddr],
        leases: &mut Vec<Lease>,
    ) -> Result<()> {
        let mut requested: Vec<IpAddr> = requested.to_vec();
        // The plugin's `GetByID`: this interface's leases, and the older id-only ones.
        let mine: Vec<IpAddr> = self
            .leases()?
            .into_iter()
            .filter(|(_, i, f)| i == id.trim() && (f == ifname || f.is_empty()))
            .map(|(ip, _, _)| ip)
            .collect();
        for (index, set) in self.sets.iter().enumerate() {
            let fail = |reason: String| Error::Unavailable {
                object: format!("range {index}"),
                reason,
            };
            let wanted = requested
                .iter()
                .position(|ip| set.iter().any(|r| r.contains(*ip)));
            let lease = if let Some(pos) = wanted {
                let ip = requested.remove(pos);
                let range = set.iter().find(|r| r.contains(ip)).expect("found above");
                if ip == range.gateway {
                    return Err(Error::invalid(
                        format!("range {index}"),
                        format!("requested ip {ip} is subnet's gateway"),
                    ));
                }
                if !self.reserve(id, ifname, ip, index)? {
                    return Err(fail(format!(
                        "requested IP address {ip} is not available in range set {}",
                        set_string(set)
                    )));
                }
                Lease {
                    address: IpNetwork::new(ip, range.subnet.prefix()).expect("prefix fits"),
                    gateway: range.gateway,
                    range_set: index,
                }
            } else {
                if let Some(ip) = mine.iter().find(|ip| set.iter().any(|r| r.contains(**ip))) {
                    return Err(Error::invalid(
                        format!("range {index}"),
                        format!(
                            "{ip} has been allocated to {id}, duplicate allocation is not allowed"
                        ),
                    ));
                }
                let mut found = None;
                let mut iter = Iter::new(set, self.last_reserved(index));
                while let Some((ip, range)) = iter.next() {
                    if self.reserve(id, ifname, ip, index)? {
                        found = Some(Lease {
                            address: IpNetwork::new(ip, range.subnet.prefix())
                                .expect("prefix fits"),
                            gateway: range.gateway,
                            range_set: index,
                        });
                        break;
                    }
                }
                found.ok_or_else(|| {
                    fail(format!(
                        "no IP addresses available in range set: {}",
                        set_string(set)
                    ))
                })?
            };
            leases.push(lease);
        }
        if !requested.is_empty() {
            let list: Vec<String> = requested.iter().map(ToString::to_string).collect();
            return Err(Error::invalid(
                "host-local allocation",
                format!("failed to allocate all requested IPs: {}", list.join(", ")),
            ));
        }
        Ok(())
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{LAST_RESERVED}{set}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Releases every lease of container `id`'s interface `ifname` (and, as the plugin does,
    /// the older id-only leases of `id`: when there are none, or always with two or more range
    /// sets); returns the addresses released.
    pub fn release(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let leases = self.leases()?;
        let id = id.trim();
        let mut mine: Vec<IpAddr> = leases
            .iter()
            .filter(|(_, i, f)| i == id && f == ifname)
            .map(|(ip, _, _)| *ip)
            .collect();
        // The plugin releases once per range set, each time the old id-only leases when no
        // new-style one is left: with one set only if there were none, with two or more always.
        if mine.is_empty() || self.sets.len() > 1 {
            mine.extend(
                leases
                    .iter()
                    .filter(|(_, i, f)| i == id && f.is_empty())
                    .map(|(ip, _, _)| *ip),
            );
        }
        for ip in &mine {
            match fs::remove_file(self.dir.join(ip.to_string())) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(self.io("release", e)),
                _ => {}
            }
        }
        Ok(mine)
    }
}

/// The plugin's range iterator: round robin through a range set from after the last reserved
/// address, skipping gateways, once around.
struct Iter<'a> {
    set: &'a [IpRange],
    index: usize,
    cur: Option<u128>,
    start: Option<u128>,
}

impl<'a> Iter<'a> {
    fn new(set: &'a [IpRange], last: Option<IpAddr>) -> Iter<'a> {
        let mut iter = Iter {
            set,
            index: 0,
            cur: None,
            start: None,
        };
        if let Some(last) = last {
            if let Some(i) = set.iter().position(|r| r.contains(last)) {
                iter.index = i;
                iter.cur = Some(to_u128(last));
            }
        }
        iter
    }

    fn next(&mut self) -> Option<(IpAddr, &'a IpRange)> {
        loop {
            let mut range = &self.set[self.index];
            let v6 = range.subnet.is_ipv6();
            match self.cur {
                None => {
                    let start = to_u128(range.start);
                    self.cur = Some(start);
                    self.start = Some(start);
                }
                Some(cur) => {
                    if cur == to_u128(range.end) {
                        self.index = (self.index + 1) % self.set.len();
                        range = &self.set[self.index];
                        self.cur = Some(to_u128(range.start));
                    } else {
                        self.cur = Some(cur + 1);
                    }
                    let cur = self.cur.expect("just set");
                    match self.start {
                        None => self.start = Some(cur),
                        Some(start) if start == cur => return None,
                        Some(_) => {}
                    }
                }
            }
            let ip = from_u128(self.cur.expect("just set"), v6);
            if ip != range.gateway {
                return Some((ip, range));
            }
        }
    }
}
