package nftcanon

// Numbers from the kernel's nf_tables UAPI (include/uapi/linux/netfilter/nf_tables.h) and
// from libnftnl's user-data layout. golang.org/x/sys/unix lacks many of the newer ones,
// so the package keeps its own table of the ones it reads.

// Address families (NFPROTO_*).
const (
	famInet   = 1
	famIPv4   = 2
	famARP    = 3
	famNetdev = 5
	famBridge = 7
	famIPv6   = 10
)

// FamilyName returns the nft name of a table family ("ip", "inet", …).
func FamilyName(fam byte) string {
	switch fam {
	case famInet:
		return "inet"
	case famIPv4:
		return "ip"
	case famARP:
		return "arp"
	case famNetdev:
		return "netdev"
	case famBridge:
		return "bridge"
	case famIPv6:
		return "ip6"
	}
	return "family-" + itoa(uint64(fam))
}

// Generic data and verdict attributes.
const (
	nftaDataValue    = 1
	nftaDataVerdict  = 2
	nftaVerdictCode  = 1
	nftaVerdictChain = 2
	nftaListElem     = 1
)

// Verdict codes.
const (
	verdictDrop     = 0
	verdictAccept   = 1
	verdictStolen   = 2
	verdictQueue    = 3
	verdictRepeat   = 4
	verdictStop     = 5
	verdictContinue = -1
	verdictBreak    = -2
	verdictJump     = -3
	verdictGoto     = -4
	verdictReturn   = -5
)

// Table attributes and flags.
const (
	nftaTableName     = 1
	nftaTableFlags    = 2
	nftaTableHandle   = 4
	nftaTableUserdata = 6
	nftaTableOwner    = 7

	tableFlagDormant = 0x1
	tableFlagOwner   = 0x2
	tableFlagPersist = 0x4
)

// Chain attributes, flags and hook attributes.
const (
	nftaChainTable    = 1
	nftaChainHandle   = 2
	nftaChainName     = 3
	nftaChainHook     = 4
	nftaChainPolicy   = 5
	nftaChainType     = 7
	nftaChainFlags    = 10
	nftaChainUserdata = 12

	chainFlagBase    = 0x1
	chainFlagOffload = 0x2
	chainFlagBinding = 0x4

	nftaHookHooknum  = 1
	nftaHookPriority = 2
	nftaHookDev      = 3
	nftaHookDevs     = 4
)

// Rule attributes.
const (
	nftaRuleTable       = 1
	nftaRuleChain       = 2
	nftaRuleHandle      = 3
	nftaRuleExpressions = 4
	nftaRuleCompat      = 5
	nftaRulePosition    = 6
	nftaRuleUserdata    = 7

	nftaExprName = 1
	nftaExprData = 2
)

// Set attributes and flags.
const (
	nftaSetTable       = 1
	nftaSetName        = 2
	nftaSetFlags       = 3
	nftaSetKeyType     = 4
	nftaSetKeyLen      = 5
	nftaSetDataType    = 6
	nftaSetDataLen     = 7
	nftaSetPolicy      = 8
	nftaSetDesc        = 9
	nftaSetID          = 10
	nftaSetTimeout     = 11
	nftaSetGCInterval  = 12
	nftaSetUserdata    = 13
	nftaSetObjType     = 15
	nftaSetHandle      = 16
	nftaSetExpr        = 17
	nftaSetExpressions = 18

	nftaSetDescSize   = 1
	nftaSetDescConcat = 2
	nftaSetFieldLen   = 1

	setFlagAnonymous = 0x1
	setFlagConstant  = 0x2
	setFlagInterval  = 0x4
	setFlagMap       = 0x8
	setFlagTimeout   = 0x10
	setFlagEval      = 0x20
	setFlagObject    = 0x40
	setFlagConcat    = 0x80
	setFlagExpr      = 0x100

	setPolicyMemory = 1
)

// Set element attributes and flags.
const (
	nftaSetElemListTable    = 1
	nftaSetElemListSet      = 2
	nftaSetElemListElements = 3

	nftaSetElemKey         = 1
	nftaSetElemData        = 2
	nftaSetElemFlags       = 3
	nftaSetElemTimeout     = 4
	nftaSetElemExpiration  = 5
	nftaSetElemUserdata    = 6
	nftaSetElemExpr        = 7
	nftaSetElemObjref      = 9
	nftaSetElemKeyEnd      = 10
	nftaSetElemExpressions = 11

	elemFlagIntervalEnd = 0x1
	elemFlagCatchall    = 0x2
)

// Object attributes and types.
const (
	nftaObjTable    = 1
	nftaObjName     = 2
	nftaObjType     = 3
	nftaObjData     = 4
	nftaObjHandle   = 6
	nftaObjUserdata = 8

	objCounter   = 1
	objQuota     = 2
	objCtHelper  = 3
	objLimit     = 4
	objConnlimit = 5
	objTunnel    = 6
	objCtTimeout = 7
	objSecmark   = 8
	objCtExpect  = 9
	objSynproxy  = 10
)

// Flowtable attributes.
const (
	nftaFlowtableTable  = 1
	nftaFlowtableName   = 2
	nftaFlowtableHook   = 3
	nftaFlowtableHandle = 5
	nftaFlowtableFlags  = 7

	nftaFlowtableHookNum      = 1
	nftaFlowtableHookPriority = 2
	nftaFlowtableHookDevs     = 3
)

// libnftnl user-data record types.
const (
	udataRuleComment  = 0
	udataTableComment = 0
	udataChainComment = 0
	udataObjComment   = 0

	udataSetKeyByteorder  = 0
	udataSetDataByteorder = 1
	udataSetMerge         = 2
	udataSetKeyTypeof     = 3
	udataSetDataTypeof    = 4
	udataSetExpr          = 5
	udataSetDataInterval  = 6
	udataSetComment       = 7

	udataElemComment = 0
	udataElemFlags   = 1
)

// Registers.
const (
	regVerdict = 0
)
