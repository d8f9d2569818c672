//! TCP_NODELAY on libgit2's HTTPS connection. libgit2 writes a smart-HTTP request's headers
//! and body apart and never turns Nagle's algorithm off, so the body waits for the server's
//! delayed ACK (40 ms on Linux) on every POST: an incremental fetch over https paid it twice
//! (measured: 84 of its 135 ms; git's curl sets TCP_NODELAY). libgit2 has no option for it and
//! shows no socket, so once its TLS handshake is done (the certificate check, before any HTTP
//! byte) this process's TCP sockets connected to the server's port get TCP_NODELAY; on any
//! other socket that matches, it is harmless.

/// Sets TCP_NODELAY on this process's TCP sockets whose peer port is `port`.
#[cfg(unix)]
pub fn on_connections_to(port: u16) {
    // `/dev/fd` lists the open descriptors (Linux and macOS): a few dozen, not OPEN_MAX.
    let Ok(entries) = std::fs::read_dir("/dev/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if peer_port(fd) == Some(port) {
            let one: libc::c_int = 1;
            // SAFETY: `one` outlives the call, and its size is passed; on a descriptor that
            // is no longer a TCP socket the call fails and changes nothing.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

#[cfg(not(unix))]
pub fn on_connections_to(_port: u16) {}

/// The peer's port of a connected IPv4 or IPv6 socket.
#[cfg(unix)]
fn peer_port(fd: i32) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len` bytes
    // into it and sets `len`.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let connected = unsafe {
        libc::getpeername(
            fd,
            (&mut address as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if connected != 0 {
        return None;
    }
    // SAFETY: the family says which structure the storage holds; both fit in it.
    match i32::from(address.ss_family) {
        libc::AF_INET => {
            let v4 = unsafe {
                &*(&address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            let v6 = unsafe {
                &*(&address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_sockets_to_the_port_get_nodelay_and_no_other() {
        let (server, other) = (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let to_server = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap() && !to_other.nodelay().unwrap());
        super::on_connections_to(server.local_addr().unwrap().port());
        assert!(to_server.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }
}
