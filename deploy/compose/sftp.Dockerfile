# A plain OpenSSH SFTP server for the compose stack: key authentication only, internal-sftp, files
# under /data. Keys come from the sftp-keys volume, made once by the `keys` service.
FROM debian:bookworm-20241111-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssh-server && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd /data && useradd --uid 1000 --home-dir /data --shell /usr/sbin/nologin upstream
COPY sshd_config /etc/ssh/sshd_config
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
