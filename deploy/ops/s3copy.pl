# Off-site copies of the backups dir to an S3-compatible bucket (deploy.ops.offsite), run by the backup service.
#
# Perl with core modules (HTTP::Tiny, Digest::SHA, POSIX, Time::Local, File::Temp): the official postgres image and
# the lab's stand-in both have them (postgresql-common depends on perl), so no S3 client is added to any image.
# HTTPS needs IO::Socket::SSL and CA certificates: the backup image (deploy/ops/backup-image) adds them to
# POSTGRES_IMAGE. Certificates are always verified (verify_SSL), against S3_CA_FILE when set, else the system's.
# Requests are signed with AWS Signature V4, path-style (ENDPOINT/BUCKET/KEY). A PUT carries the sidecar's
# sha256 as x-amz-content-sha256, so the store itself refuses a body that does not match it.
#
#   sync  copy every complete local backup (its .meta exists) missing in the bucket to PREFIX/<reason>/<name>,
#         the dump first and the sidecar last (a copy is complete exactly when its .meta object exists), then
#         apply the retention to PREFIX/scheduled/ (same rule as the local loop). Exit 1 after any ERROR line.
#   list  print the keys under PREFIX/ (for `inv db.backups`); credentials on stdin (S3_CREDENTIALS=stdin).
#   get   KEY: print the object (a copy's bytes; the lab test reads the bucket with it).
#   doomed NAME...: the scheduled names the retention drops; sign: the Authorization header of a request
#         (both for the unit tests: the retention rule, and SigV4 against AWS's published examples).
#
# Environment: S3_ENDPOINT (http[s]://host[:port]), S3_BUCKET, S3_PREFIX, S3_REGION, KEEP_DAILY, KEEP_WEEKLY,
# S3_CA_FILE (a PEM file of the CA(s) to trust instead of the system's; '-': the rest of stdin, after the
# credentials); credentials from /run/secrets/backup_s3_key_id and backup_s3_secret (never the environment).
use strict;
use warnings;
use Digest::SHA qw(sha256_hex hmac_sha256 hmac_sha256_hex);
use HTTP::Tiny;
use POSIX qw(strftime);
use Time::Local qw(timegm);

my $DIR = $ENV{BACKUP_DIR} || '/backups';
my %S3 = map { $_ => ($ENV{"S3_$_"} // '') } qw(ENDPOINT BUCKET PREFIX REGION);
my ($HTTP, $CA_TMP, @KEYS);

sub say_ { print "backup: ", @_, "\n" }

sub enc {    # RFC 3986 percent-encoding as SigV4 wants it; $safe: extra characters kept ('/' in paths)
    my ($s, $safe) = @_;
    $safe = quotemeta($safe // '');
    $s =~ s/([^A-Za-z0-9\-._~$safe])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub authorization {
    my ($method, $path, $query, $headers, $hash, $amzdate, $id, $secret, $region) = @_;
    my @names = sort keys %$headers;
    my $canonical = join("\n", $method, $path, $query, (map { "$_:$headers->{$_}" } @names), '',
                         join(';', @names), $hash);
    my $date = substr($amzdate, 0, 8);
    my $scope = "$date/$region/s3/aws4_request";
    my $k = hmac_sha256($date, "AWS4$secret");
    $k = hmac_sha256($_, $k) for ($region, 's3', 'aws4_request');
    my $sts = join("\n", 'AWS4-HMAC-SHA256', $amzdate, $scope, sha256_hex($canonical));
    return "AWS4-HMAC-SHA256 Credential=$id/$scope, SignedHeaders=" . join(';', @names)
         . ", Signature=" . hmac_sha256_hex($sts, $k);
}

sub credentials {
    return @KEYS if @KEYS;
    if (($ENV{S3_CREDENTIALS} // '') eq 'stdin') {
        @KEYS = map { my $l = <STDIN> // ''; $l =~ s/\s+$//; $l } 1 .. 2;
    } else {
        for my $f ('/run/secrets/backup_s3_key_id', '/run/secrets/backup_s3_secret') {
            open(my $fh, '<', $f) or return ();
            local $/; my $v = <$fh>; $v =~ s/^\s+|\s+$//g; push @KEYS, $v;
        }
    }
    return @KEYS;
}

sub ca_file {    # S3_CA_FILE; '-': the PEM on stdin after the credentials, kept in a temporary file until exit
    my $ca = $ENV{S3_CA_FILE} // '';
    return $ca unless $ca eq '-';
    require File::Temp;
    my $pem = do { local $/; <STDIN> } // '';
    $CA_TMP = File::Temp->new(SUFFIX => '.pem');
    print {$CA_TMP} $pem;
    $CA_TMP->flush;
    return $CA_TMP->filename;
}

sub http {    # the client, made once the credentials are read (stdin: they come before the CA)
    return $HTTP if $HTTP;
    credentials();
    my $ca = ca_file();
    $HTTP = HTTP::Tiny->new(timeout => 30, agent => 'djdeploy-backup/1', verify_SSL => 1,
                            ($ca ne '' ? (SSL_options => { SSL_ca_file => $ca }) : ()));
    return $HTTP;
}

sub no_https {    # why an https endpoint cannot be used here ('' when it can, or for http)
    return '' unless $S3{ENDPOINT} =~ /^https:/;
    my ($ok, $why) = http()->can_ssl;
    return '' if $ok;
    $why =~ s/\s+/ /g;
    return "this image's Perl cannot do HTTPS for $S3{ENDPOINT}: $why";
}

sub request {    # ($method, $key or '' for the bucket, {query}, sha256 => hex, headers => {}, content => ...)
    my ($method, $key, $query, %opt) = @_;
    my ($scheme, $authority) = $S3{ENDPOINT} =~ m{^(https?)://([^/]+)$};
    my $host = lc $authority;
    $host =~ s/:80$// if $scheme eq 'http';
    $host =~ s/:443$// if $scheme eq 'https';
    my $path = '/' . enc($S3{BUCKET}) . ($key eq '' ? '' : '/' . enc($key, '/'));
    my $q = join('&', map { enc($_) . '=' . enc($query->{$_}) } sort keys %$query);
    my $amzdate = strftime('%Y%m%dT%H%M%SZ', gmtime);
    my $hash = $opt{sha256} // sha256_hex('');
    my %signed = (host => $host, 'x-amz-content-sha256' => $hash, 'x-amz-date' => $amzdate);
    my ($id, $secret) = credentials();
    return { status => 599, success => 0, content => 'cannot read the credentials (secrets backup_s3_*)' }
        unless defined $secret && length $secret;
    my $auth = authorization($method, $path, $q, \%signed, $hash, $amzdate, $id, $secret, $S3{REGION});
    delete $signed{host};    # HTTP::Tiny sends the same Host itself
    my %args = (headers => { %signed, authorization => $auth, %{ $opt{headers} || {} } });
    exists $opt{$_} and $args{$_} = $opt{$_} for qw(content data_callback);
    return http()->request($method, "$scheme://$host$path" . ($q eq '' ? '' : "?$q"), \%args);
}

sub failure {
    my ($res) = @_;
    if ($res->{status} == 599) {
        my ($line) = split /\n/, ($res->{content} // '');
        return "cannot reach $S3{ENDPOINT}: " . ($line // 'no answer');
    }
    my ($code) = ($res->{content} // '') =~ m{<Code>([^<]+)</Code>};
    return "HTTP $res->{status} " . ($code // $res->{reason} // '');
}

sub unxml { my ($s) = @_; my %e = (amp => '&', lt => '<', gt => '>', quot => '"', apos => "'");
            $s =~ s/&(amp|lt|gt|quot|apos);/$e{$1}/g; return $s }

sub list_keys {    # every key under PREFIX/, or (undef, why)
    my (@keys, $token);
    do {
        my %q = ('list-type' => 2, prefix => "$S3{PREFIX}/");
        $q{'continuation-token'} = $token if defined $token;
        my $res = request('GET', '', \%q);
        return (undef, failure($res)) unless $res->{success};
        push @keys, map { unxml($_) } $res->{content} =~ m{<Key>([^<]*)</Key>}g;
        $token = ($res->{content} =~ m{<IsTruncated>true</IsTruncated>}
                  && $res->{content} =~ m{<NextContinuationToken>([^<]+)</NextContinuationToken>}) ? unxml($1) : undef;
    } while (defined $token);
    return (\@keys);
}

sub read_meta {
    my ($path) = @_;
    open(my $fh, '<', $path) or return ();
    my %m = map { chomp; split /=/, $_, 2 } grep { /=/ } <$fh>;
    return %m;
}

sub upload {    # the dump (checked against its sidecar first), then the sidecar; true on success
    my ($name, $key, $m) = @_;
    my $file = "$DIR/$name";
    my $size = -s $file;
    my $sum = defined $size ? Digest::SHA->new(256)->addfile($file, 'b')->hexdigest : '';
    if (!defined $size || $size != ($m->{size} // -1) || $sum ne ($m->{sha256} // '')) {
        say_("ERROR off-site copy of $name skipped: the local file does not match its sidecar (size or sha256)");
        return 0;
    }
    open(my $fh, '<:raw', $file) or do { say_("ERROR off-site copy of $name: cannot read $file: $!"); return 0 };
    my $res = request('PUT', $key, {}, sha256 => $sum, content => sub { my $buf; read($fh, $buf, 1 << 20) ? $buf : undef },
                      headers => { 'content-length' => $size, 'content-type' => 'application/octet-stream' });
    if ($res->{success}) {
        my $meta = do { open(my $mh, '<:raw', "$file.meta") or return 0; local $/; <$mh> };
        $res = request('PUT', "$key.meta", {}, sha256 => sha256_hex($meta), content => $meta,
                       headers => { 'content-type' => 'text/plain' });
    }
    unless ($res->{success}) {
        say_("ERROR off-site copy of $name to s3://$S3{BUCKET}/$key failed: ", failure($res),
             " (the local backup is kept; retrying next round)");
        return 0;
    }
    say_("off-site copy $name -> s3://$S3{BUCKET}/$key (sha256 ", substr($sum, 0, 12), ")");
    return 1;
}

sub doomed {    # scheduled names (newest first) the retention drops: the first of each day / ISO week stays
    my (@names) = @_;
    my (%days, %weeks, @drop);
    for my $n (@names) {
        my ($y, $mo, $d) = $n =~ /^(\d{4})(\d\d)(\d\d)T\d{6}Z-/ or next;
        my $week = strftime('%G%V', gmtime(timegm(0, 0, 12, $d, $mo - 1, $y)));
        my $keep = 0;
        if (!$days{"$y$mo$d"} && keys(%days) < $ENV{KEEP_DAILY}) { $days{"$y$mo$d"} = $keep = 1 }
        if (!$weeks{$week} && keys(%weeks) < $ENV{KEEP_WEEKLY}) { $weeks{$week} = $keep = 1 }
        push @drop, $n unless $keep;
    }
    return @drop;
}

sub retention {    # on PREFIX/scheduled/ of the bucket; true on success
    my ($have) = @_;
    my $dir = "$S3{PREFIX}/scheduled/";
    my (%complete, %orphan);
    for my $key (grep { index($_, $dir) == 0 } keys %$have) {
        my $n = substr($key, length $dir);
        if ($n =~ s/\.meta$//) { $complete{$n} = 1 } else { $orphan{$n} = 1 }
    }
    # a dump without its sidecar: a copy that failed half-way; gone once its local backup is gone too
    my @drop = ((doomed(sort { $b cmp $a } keys %complete)),
                grep { !$complete{$_} && !-e "$DIR/$_.meta" } keys %orphan);
    my $ok = 1;
    for my $n (@drop) {
        my $gone = 1;
        for my $key ("$dir$n.meta", "$dir$n") {    # the sidecar first: a half-removed copy never looks complete
            next unless $have->{$key};
            my $res = request('DELETE', $key, {});
            next if $res->{success};
            say_("ERROR off-site retention could not remove s3://$S3{BUCKET}/$key: ", failure($res));
            $ok = $gone = 0;
            last;
        }
        say_("off-site retention removed $n") if $gone;
    }
    return $ok;
}

sub sync {
    if (my $why = no_https()) {
        say_("ERROR off-site copy impossible: $why (the backup image deploy/ops/backup-image adds "
             . "libio-socket-ssl-perl and ca-certificates); the local backups are kept");
        return 1;
    }
    my ($keys, $why) = list_keys();
    unless ($keys) {
        say_("ERROR off-site copy to s3://$S3{BUCKET}/$S3{PREFIX}/ failed: $why (the local backups are kept; "
             . "retrying next round)");
        return 1;
    }
    my %have = map { $_ => 1 } @$keys;
    my $failed = 0;
    for my $meta (sort glob("$DIR/*.dump.meta")) {
        my %m = read_meta($meta);
        (my $name = $meta) =~ s{^.*/|\.meta$}{}g;
        my $reason = ($m{reason} // '') =~ /^[a-z][a-z-]*$/ ? $m{reason} : 'other';
        my $key = "$S3{PREFIX}/$reason/$name";
        next if $have{"$key.meta"};
        if (upload($name, $key, \%m)) { $have{$key} = $have{"$key.meta"} = 1 } else { $failed++ }
    }
    $failed++ unless retention(\%have);
    return $failed ? 1 : 0;
}

my $cmd = shift(@ARGV) // '';
if ($cmd eq 'sync') { exit sync() }
if ($cmd eq 'list') {
    if (my $why = no_https()) { print STDERR "$why\n"; exit 2 }
    my ($keys, $why) = list_keys();
    if (!$keys) { print STDERR "$why\n"; exit 2 }
    print "$_\n" for @$keys;
    exit 0;
}
if ($cmd eq 'get') {     # KEY: the object's bytes on stdout (streamed)
    binmode STDOUT;
    my $res = request('GET', $ARGV[0] // '', {}, data_callback => sub { print STDOUT $_[0] });
    if (!$res->{success}) { print STDERR failure($res), "\n"; exit 2 }
    exit 0;
}
if ($cmd eq 'doomed') {  # NAME...: which of these scheduled backups the retention drops (unit tests)
    print "$_\n" for doomed(sort { $b cmp $a } @ARGV);
    exit 0;
}
if ($cmd eq 'sign') {    # METHOD PATH QUERY AMZDATE HASH ID SECRET REGION name=value...
    my ($method, $path, $query, $amzdate, $hash, $id, $secret, $region, @h) = @ARGV;
    my %headers = map { split /=/, $_, 2 } @h;
    print authorization($method, $path, $query, \%headers, $hash, $amzdate, $id, $secret, $region), "\n";
    exit 0;
}
print STDERR "usage: s3copy.pl sync|list|sign\n";
exit 64;
