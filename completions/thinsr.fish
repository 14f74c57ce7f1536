# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_thinsr_global_optspecs
    string join \n json y/yes q/quiet v/verbose config= scheme-dir= h/help V/version
end

function __fish_thinsr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_thinsr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_thinsr_using_subcommand
    set -l cmd (__fish_thinsr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c thinsr -n "__fish_thinsr_needs_command" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_needs_command" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_needs_command" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_needs_command" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_needs_command" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_needs_command" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_needs_command" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "sr" -d 'Storage repositories: create, introduce, attach, inspect, destroy'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "vdi" -d 'Virtual disks: thin or preallocated, snapshots, clones, resize, names and keys'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "template" -d 'Templates: read-only images cloned without copying, from file://, nbd://, nfs://, smb://, http:// or https:// and s3:// (read lazily), or any scheme a script of yours handles'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "xapi" -d 'The xapi storage plugin: install thinsr as an SMAPIv3 volume and datapath plugin'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "pool" -d 'The thin pool: use, growth policy, cron maintenance, checks'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "export" -d 'Write a VDI as a raw, VHD or qcow2 image, reading only the blocks that hold data'
complete -c thinsr -n "__fish_thinsr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "create" -d 'Create an owned SR on raw disks (or on a sparse file with --file)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "introduce" -d 'Share an existing volume group: make (or adopt) a thin pool beside the admin\'s LVs, or register an SR already in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "attach" -d 'Activate the SR\'s pool and metadata (re-attaching a file SR\'s loop device)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "detach" -d 'Deactivate the SR; refused while a disk is attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "forget" -d 'Unregister the SR from this host; nothing on disk changes'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "destroy" -d 'Destroy the SR and everything thinsr made in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "show" -d 'Show an SR\'s layout: disks, pool use, thinsr\'s LVs and the admin\'s'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "check" -d 'Compare the SR\'s metadata with LVM and the kernel; --repair fixes what an interrupted command left'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "list" -d 'List registered SRs'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "rename" -d 'Give the SR a new name (the volume group keeps its own)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "set-description" -d 'Set the SR\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and not __fish_seen_subcommand_from create introduce attach detach forget destroy show check list rename set-description help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l file -d 'Back the SR with a new sparse file attached as a loop device' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l size -d 'Size of the file for --file (512M, 20G, 1.5T)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l name -d 'The SR\'s name; the volume group is named after it' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l force -d 'Wipe signatures found on the disks'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l name -d 'The SR\'s name (default: the VG\'s)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l pool-size -d 'Size of a new thin pool: SIZE, or N% of the VG\'s free space' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l pool -d 'Adopt this existing thin pool LV instead of making one. A pool that does not zero new blocks (made with -Zn) is refused: its new VDIs would show old data; on a terminal thinsr offers to turn zeroing on, elsewhere --yes does' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from introduce" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from attach" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from detach" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from forget" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from destroy" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -l repair -d 'Repair what was found'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from rename" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from set-description" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create an owned SR on raw disks (or on a sparse file with --file)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "introduce" -d 'Share an existing volume group: make (or adopt) a thin pool beside the admin\'s LVs, or register an SR already in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "attach" -d 'Activate the SR\'s pool and metadata (re-attaching a file SR\'s loop device)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "detach" -d 'Deactivate the SR; refused while a disk is attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Unregister the SR from this host; nothing on disk changes'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "destroy" -d 'Destroy the SR and everything thinsr made in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show an SR\'s layout: disks, pool use, thinsr\'s LVs and the admin\'s'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "check" -d 'Compare the SR\'s metadata with LVM and the kernel; --repair fixes what an interrupted command left'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "list" -d 'List registered SRs'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "rename" -d 'Give the SR a new name (the volume group keeps its own)'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "set-description" -d 'Set the SR\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand sr; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "create" -d 'Create a VDI: a thin LV in the pool, or a fully zeroed LV with --preallocate'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "list" -d 'List VDIs: kind, size, space used, parent, attached or not'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "show" -d 'Show everything known about a VDI: LV, device, parent, keys'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "destroy" -d 'Destroy a VDI; refused while attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "snapshot" -d 'Take an instant read-only snapshot of a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "clone" -d 'Make an instant writable copy of a VDI or template (a thin snapshot)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "resize" -d 'Grow a VDI to SIZE, or by +SIZE; shrinking needs --allow-shrink'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "rename" -d 'Give a VDI a new name; its LV is renamed to match, the uuid stays'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "set-description" -d 'Set a VDI\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "set" -d 'Set a key on a VDI (kept in the SR\'s metadata, shown under keys)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "unset" -d 'Remove a key from a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "attach" -d 'Attach a VDI and print the block device to give the VM'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "detach" -d 'Detach a VDI; refused while something holds it open, done when already detached'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "import" -d 'Make a new thin VDI from a disk image (a file, an NBD export, or - for stdin)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "send" -d 'Write a snapshot (or what changed since an older one) as a replication stream'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "receive" -d 'Apply a replication stream: a replica VDI\'s newest snapshot, or a new replica'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "replicate" -d 'Bring a replica of a VDI up to date: snapshot, send what changed, prune (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "cbt" -d 'Turn changed block tracking on or off (xapi\'s cbt_enabled; snapshots inherit it)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "changed-blocks" -d 'List the 64 KiB blocks that differ between two snapshots of one VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "serve" -d 'Serve a VDI over NBD on a unix socket until interrupted (read-only unless --writable)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "mirror" -d 'Copy a VDI to an NBD export while it stays in use: the kernel mirrors its writes'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "copy" -d 'Copy a VDI into another SR of this host, thin, while it stays in use'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "data-destroy" -d 'Free a snapshot\'s data, keeping its block map for changed-blocks and export --base'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "revert" -d 'Make a VDI\'s contents its snapshot\'s again; its uuid, name, keys and CBT stay'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and not __fish_seen_subcommand_from create list show destroy snapshot clone resize rename set-description set unset attach detach import send receive replicate cbt changed-blocks serve mirror copy data-destroy revert help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l size -d 'Virtual size (512M, 40G, 1.5T)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l description -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l preallocate -d 'Allocate and zero all of it now, from the volume group\'s free space'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from destroy" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -l name -d 'Name of the snapshot (default: the VDI\'s own, as xe does)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from snapshot" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -l name -d 'Name of the clone (default: the VDI\'s own, as xe does)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from clone" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -l allow-shrink -d 'Allow a smaller size (data beyond it is lost)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from resize" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from rename" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set-description" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from unset" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -l read-only -d 'Attach it read-only (the only way to attach a template)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from attach" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from detach" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l name -d 'The new VDI\'s name (label)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l format -d 'The image\'s format (auto: detected)' -r -f -a "auto\t''
raw\t''
vhd\t''
qcow2\t''
vmdk\t''
vhdx\t''"
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l size -d 'The virtual size of a raw stream on stdin (its exact length)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l description -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l base -d 'Send only what differs from this older snapshot of the same VDI, which the receiving SR holds a replica of' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l resume -d 'Continue a stream a receive stopped, from the token it printed' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s o -l output -d 'Where the stream goes (- or none: stdout, never a terminal)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l force -d 'Replace an existing file'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from send" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s i -l input -d 'The stream (- or none: stdin)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l keep -d 'Destroy the replica\'s older snapshots beyond the newest N (at least 1)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l resumable -d 'Keep what verified when the stream stops early, to resume it'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from receive" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l to -d 'ssh://[USER@]HOST[:PORT][/SR], or an SR of this host' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l keep -d 'Replication snapshots kept on each side' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l remote-thinsr -d 'thinsr\'s path on the other host' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from replicate" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from cbt" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l offset -d 'Start of the part of the disk to look at (widened to 64 KiB blocks)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l length -d 'Length of the part to look at (default: to the end of the disk)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from changed-blocks" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l socket -d 'Where to put the socket (a path where nothing is yet)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l writable -d 'Serve it read-write (a detached VDI, attached for the while): what a client writes lands in the VDI, and zeros it writes unmap blocks, keeping it thin'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from serve" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from mirror" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l to -d 'The SR to copy into' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l name -d 'The new VDI\'s label (the source\'s by default)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from copy" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from data-destroy" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from revert" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a VDI: a thin LV in the pool, or a fully zeroed LV with --preallocate'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "list" -d 'List VDIs: kind, size, space used, parent, attached or not'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show everything known about a VDI: LV, device, parent, keys'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "destroy" -d 'Destroy a VDI; refused while attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "snapshot" -d 'Take an instant read-only snapshot of a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "clone" -d 'Make an instant writable copy of a VDI or template (a thin snapshot)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "resize" -d 'Grow a VDI to SIZE, or by +SIZE; shrinking needs --allow-shrink'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "rename" -d 'Give a VDI a new name; its LV is renamed to match, the uuid stays'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "set-description" -d 'Set a VDI\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set a key on a VDI (kept in the SR\'s metadata, shown under keys)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "unset" -d 'Remove a key from a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "attach" -d 'Attach a VDI and print the block device to give the VM'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "detach" -d 'Detach a VDI; refused while something holds it open, done when already detached'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "import" -d 'Make a new thin VDI from a disk image (a file, an NBD export, or - for stdin)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "send" -d 'Write a snapshot (or what changed since an older one) as a replication stream'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "receive" -d 'Apply a replication stream: a replica VDI\'s newest snapshot, or a new replica'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "replicate" -d 'Bring a replica of a VDI up to date: snapshot, send what changed, prune (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "cbt" -d 'Turn changed block tracking on or off (xapi\'s cbt_enabled; snapshots inherit it)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "changed-blocks" -d 'List the 64 KiB blocks that differ between two snapshots of one VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Serve a VDI over NBD on a unix socket until interrupted (read-only unless --writable)'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "mirror" -d 'Copy a VDI to an NBD export while it stays in use: the kernel mirrors its writes'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "copy" -d 'Copy a VDI into another SR of this host, thin, while it stays in use'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "data-destroy" -d 'Free a snapshot\'s data, keeping its block map for changed-blocks and export --base'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "revert" -d 'Make a VDI\'s contents its snapshot\'s again; its uuid, name, keys and CBT stay'
complete -c thinsr -n "__fish_thinsr_using_subcommand vdi; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "introduce" -d 'Register a read-only image as a template; nothing is copied'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "forget" -d 'Unregister a template (and remove its cache or local copy); refused while clones read from it'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "cache" -d 'Keep (on) or drop (off) a local copy-on-read cache of a remote template; off also removes its local copy'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "warm" -d 'Fetch a cached or lazy template completely now into a local copy, with progress (cancellable; a lazy one resumes where it stopped)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "localize" -d 'Copy a template\'s data into a thin LV of the pool that its clones read in the kernel'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "list" -d 'List templates'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "show" -d 'Show a template: its URI, format, size and clones'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and not __fish_seen_subcommand_from introduce forget cache warm localize list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l name -d 'The template\'s name (default: the image\'s file name without extension)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l sha256 -d 'An http(s) image\'s SHA-256: it is then fetched whole before any clone reads it, checked against this, and removed when it differs. Without it an http(s) image is read lazily' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l timeout -d 'A lazy http(s) template: how long a clone\'s read of a piece not on the host waits for the server before it fails (EIO)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l rate -d 'With --warm: at most this many bytes a second (e.g. 50M)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l cache -d 'Keep a local copy-on-read cache of it (see \'thinsr template cache\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l warm -d 'A lazy http(s) template: fetch the rest at once, as \'thinsr template warm\' does'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from introduce" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from forget" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from cache" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -l rate -d 'A lazy template: at most this many bytes a second from its server (e.g. 50M)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from warm" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from localize" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -l sr -d 'The SR (name, uuid or volume group); may be left out when only one is registered' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "introduce" -d 'Register a read-only image as a template; nothing is copied'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Unregister a template (and remove its cache or local copy); refused while clones read from it'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "cache" -d 'Keep (on) or drop (off) a local copy-on-read cache of a remote template; off also removes its local copy'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "warm" -d 'Fetch a cached or lazy template completely now into a local copy, with progress (cancellable; a lazy one resumes where it stopped)'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "localize" -d 'Copy a template\'s data into a thin LV of the pool that its clones read in the kernel'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "list" -d 'List templates'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a template: its URI, format, size and clones'
complete -c thinsr -n "__fish_thinsr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -f -a "install" -d 'Install the plugin\'s method files for xapi-storage-script, each running this binary'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -f -a "uninstall" -d 'Remove the method files `xapi install` made'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and not __fish_seen_subcommand_from install uninstall help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -l root -d 'Where xapi-storage-script looks for plugins' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -l binary -d 'The thinsr the method files run (default: this binary; packages give /usr/sbin/thinsr while building)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -l root -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from uninstall" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install the plugin\'s method files for xapi-storage-script, each running this binary'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Remove the method files `xapi install` made'
complete -c thinsr -n "__fish_thinsr_using_subcommand xapi; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "show" -d 'Show data and metadata use, over-commitment, growth policy and room to grow'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "extend" -d 'Grow the pool\'s data to SIZE (or by +SIZE), and/or its metadata'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "set" -d 'Set the growth policy (kept in the SR\'s metadata)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "maintain" -d 'Grow pools that passed their threshold; quiet unless there is news (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "watch" -d 'Grow pools the moment the kernel says they fill (run as a service)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "check" -d 'Check the pool\'s metadata with thin_check (on a snapshot while it is live)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and not __fish_seen_subcommand_from show extend set maintain watch check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -l metadata -d 'New metadata size, or +SIZE' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from extend" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l threshold -d 'Use (percent) of data or metadata at which the pool grows' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l grow-by -d 'How much the pool grows each time, in percent of its size' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l max-size -d 'The largest the pool may grow to: SIZE, or N% of the volume group' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l when-full -d 'What a write into a full pool does: queue (up to 60 s, then fail) or error at once' -r -f -a "queue\t''
error\t''"
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l max-overcommit -d 'Refuse new thin disks once their virtual total would pass RATIO x the pool\'s size' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from maintain" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -l interval -d 'Also look at every pool this often, in seconds, between the kernel\'s events' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from watch" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show data and metadata use, over-commitment, growth policy and room to grow'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "extend" -d 'Grow the pool\'s data to SIZE (or by +SIZE), and/or its metadata'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set the growth policy (kept in the SR\'s metadata)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "maintain" -d 'Grow pools that passed their threshold; quiet unless there is news (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "watch" -d 'Grow pools the moment the kernel says they fill (run as a service)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the pool\'s metadata with thin_check (on a snapshot while it is live)'
complete -c thinsr -n "__fish_thinsr_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l sr -d 'Look for the VDI in this SR only' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l format -d 'Image format' -r -f -a "raw\t''
vhd\t''
qcow2\t''"
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s o -l output -d 'Where to write: a file, or - for stdout (the default when stdout is not a terminal)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l base -d 'Only what changed since this older snapshot of the VDI (a qcow2 over its export)' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l backing-name -d 'The backing file name written into a --base export' -r
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l config -d 'Directory holding thinsr\'s host configuration (the list of known SRs)' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l scheme-dir -d 'Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach URI`); a script named nfs, smb, http or https replaces thinsr\'s own handler' -r -F
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l force -d 'Replace an existing output file'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -l json -d 'Print the result as one JSON document (errors in the xapi shape)'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s y -l yes -d 'Answer yes to confirmations (needed for destructive commands off a terminal)'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s q -l quiet -d 'Print nothing but errors'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s v -l verbose -d 'Show each lvm command run and its duration on stderr'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c thinsr -n "__fish_thinsr_using_subcommand export" -s V -l version -d 'Print version'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "sr" -d 'Storage repositories: create, introduce, attach, inspect, destroy'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "vdi" -d 'Virtual disks: thin or preallocated, snapshots, clones, resize, names and keys'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "template" -d 'Templates: read-only images cloned without copying, from file://, nbd://, nfs://, smb://, http:// or https:// and s3:// (read lazily), or any scheme a script of yours handles'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "xapi" -d 'The xapi storage plugin: install thinsr as an SMAPIv3 volume and datapath plugin'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "pool" -d 'The thin pool: use, growth policy, cron maintenance, checks'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "export" -d 'Write a VDI as a raw, VHD or qcow2 image, reading only the blocks that hold data'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and not __fish_seen_subcommand_from sr vdi template xapi pool export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "create" -d 'Create an owned SR on raw disks (or on a sparse file with --file)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "introduce" -d 'Share an existing volume group: make (or adopt) a thin pool beside the admin\'s LVs, or register an SR already in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "attach" -d 'Activate the SR\'s pool and metadata (re-attaching a file SR\'s loop device)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "detach" -d 'Deactivate the SR; refused while a disk is attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "forget" -d 'Unregister the SR from this host; nothing on disk changes'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "destroy" -d 'Destroy the SR and everything thinsr made in it'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "show" -d 'Show an SR\'s layout: disks, pool use, thinsr\'s LVs and the admin\'s'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "check" -d 'Compare the SR\'s metadata with LVM and the kernel; --repair fixes what an interrupted command left'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "list" -d 'List registered SRs'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "rename" -d 'Give the SR a new name (the volume group keeps its own)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from sr" -f -a "set-description" -d 'Set the SR\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "create" -d 'Create a VDI: a thin LV in the pool, or a fully zeroed LV with --preallocate'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "list" -d 'List VDIs: kind, size, space used, parent, attached or not'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "show" -d 'Show everything known about a VDI: LV, device, parent, keys'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "destroy" -d 'Destroy a VDI; refused while attached'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "snapshot" -d 'Take an instant read-only snapshot of a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "clone" -d 'Make an instant writable copy of a VDI or template (a thin snapshot)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "resize" -d 'Grow a VDI to SIZE, or by +SIZE; shrinking needs --allow-shrink'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "rename" -d 'Give a VDI a new name; its LV is renamed to match, the uuid stays'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "set-description" -d 'Set a VDI\'s description'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "set" -d 'Set a key on a VDI (kept in the SR\'s metadata, shown under keys)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "unset" -d 'Remove a key from a VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "attach" -d 'Attach a VDI and print the block device to give the VM'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "detach" -d 'Detach a VDI; refused while something holds it open, done when already detached'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "import" -d 'Make a new thin VDI from a disk image (a file, an NBD export, or - for stdin)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "send" -d 'Write a snapshot (or what changed since an older one) as a replication stream'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "receive" -d 'Apply a replication stream: a replica VDI\'s newest snapshot, or a new replica'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "replicate" -d 'Bring a replica of a VDI up to date: snapshot, send what changed, prune (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "cbt" -d 'Turn changed block tracking on or off (xapi\'s cbt_enabled; snapshots inherit it)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "changed-blocks" -d 'List the 64 KiB blocks that differ between two snapshots of one VDI'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "serve" -d 'Serve a VDI over NBD on a unix socket until interrupted (read-only unless --writable)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "mirror" -d 'Copy a VDI to an NBD export while it stays in use: the kernel mirrors its writes'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "copy" -d 'Copy a VDI into another SR of this host, thin, while it stays in use'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "data-destroy" -d 'Free a snapshot\'s data, keeping its block map for changed-blocks and export --base'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from vdi" -f -a "revert" -d 'Make a VDI\'s contents its snapshot\'s again; its uuid, name, keys and CBT stay'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "introduce" -d 'Register a read-only image as a template; nothing is copied'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "forget" -d 'Unregister a template (and remove its cache or local copy); refused while clones read from it'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "cache" -d 'Keep (on) or drop (off) a local copy-on-read cache of a remote template; off also removes its local copy'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "warm" -d 'Fetch a cached or lazy template completely now into a local copy, with progress (cancellable; a lazy one resumes where it stopped)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "localize" -d 'Copy a template\'s data into a thin LV of the pool that its clones read in the kernel'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "list" -d 'List templates'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "show" -d 'Show a template: its URI, format, size and clones'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from xapi" -f -a "install" -d 'Install the plugin\'s method files for xapi-storage-script, each running this binary'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from xapi" -f -a "uninstall" -d 'Remove the method files `xapi install` made'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "show" -d 'Show data and metadata use, over-commitment, growth policy and room to grow'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "extend" -d 'Grow the pool\'s data to SIZE (or by +SIZE), and/or its metadata'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "set" -d 'Set the growth policy (kept in the SR\'s metadata)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "maintain" -d 'Grow pools that passed their threshold; quiet unless there is news (for cron)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "watch" -d 'Grow pools the moment the kernel says they fill (run as a service)'
complete -c thinsr -n "__fish_thinsr_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "check" -d 'Check the pool\'s metadata with thin_check (on a snapshot while it is live)'
